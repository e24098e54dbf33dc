use super::support::{PASSWORD, S1, S2, USER, Zomro, config, error_type, settle, sim, val};
use crate::sim::{Faults, SimConfig};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test]
async fn auth_session_and_access_errors() {
    let sim = sim(config()).await;
    let z = Zomro::new(&sim);
    let s1 = S1.to_string();

    let wrong = z
        .call(&[("func", "auth"), ("username", USER), ("password", "nope")])
        .await;
    assert_eq!(error_type(&wrong).as_deref(), Some("auth"));
    assert!(wrong["doc"]["error"]["msg"]["$"].is_string());

    let no_auth = z
        .call(&[("func", "instances.snapshots"), ("elid", &s1)])
        .await;
    assert_eq!(error_type(&no_auth).as_deref(), Some("access"));
    let bogus = z.list(S1, "deadbeef").await;
    assert_eq!(error_type(&bogus).as_deref(), Some("access"));
    assert!(
        bogus["doc"]["error"]["msg"]["$"]
            .as_str()
            .is_some_and(|m| m.starts_with("Insufficient privileges"))
    );

    let session = z.login().await;
    assert_eq!(sim.sessions(), 1);
    let ok = z.list(S1, &session).await;
    assert_eq!(error_type(&ok), None, "{ok}");

    let authinfo = format!("{USER}:{PASSWORD}");
    let stateless = z
        .call(&[
            ("func", "instances.snapshots"),
            ("elid", &s1),
            ("authinfo", &authinfo),
        ])
        .await;
    assert_eq!(error_type(&stateless), None, "{stateless}");
    let bad_info = z
        .call(&[
            ("func", "instances.snapshots"),
            ("elid", &s1),
            ("authinfo", "tester:x"),
        ])
        .await;
    assert!(error_type(&bad_info).is_some());

    let unknown = z
        .call(&[("func", "instances.restore"), ("auth", &session)])
        .await;
    assert_eq!(error_type(&unknown).as_deref(), Some("missed"));
    let missing_instance = z.list(987_654, &session).await;
    assert_eq!(error_type(&missing_instance).as_deref(), Some("missed"));

    let calls = sim.calls();
    assert_eq!(calls.get("zomro.auth"), Some(&2));
    assert_eq!(calls.get("zomro.instances.snapshots"), Some(&6));
    assert_eq!(calls.get("zomro.unknown"), Some(&1));
    sim.shutdown().await;
}

#[tokio::test]
async fn session_lapses_after_idle_time() {
    let sim = sim(SimConfig {
        session_idle: Duration::from_millis(400),
        ..config()
    })
    .await;
    let z = Zomro::new(&sim);
    let session = z.login().await;
    // Requests within the idle window keep the session alive.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(error_type(&z.list(S1, &session).await), None);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let expired = z.list(S1, &session).await;
    assert_eq!(error_type(&expired).as_deref(), Some("access"));
    assert_eq!(sim.sessions(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn create_saving_then_active_with_wrapped_fields() {
    let sim = sim(config()).await;
    let z = Zomro::new(&sim);
    let session = z.login().await;
    let created = z.create(S1, "MySnapshot", &session, true).await;
    assert_eq!(error_type(&created), None, "{created}");
    assert!(created["doc"]["ok"].is_object());

    let body = z.list(S1, &session).await;
    let elems = Zomro::elems(&body);
    assert_eq!(elems.len(), 1);
    let e = &elems[0];
    assert_eq!(val(e, "fleio_status"), "Saving");
    assert!(e.get("image_size").is_none(), "size unknown while saving");
    assert_eq!(val(e, "name"), "MySnapshot");
    assert!(val(e, "id").parse::<u64>().is_ok());
    assert_eq!(val(e, "protected"), "off");
    assert_eq!(val(e, "disk_format"), "qcow2");
    assert_eq!(val(e, "visibility"), "private");
    assert_eq!(val(e, "fleio_id").len(), 36);
    let date = val(e, "createdate");
    assert!(
        date.parse::<jiff::civil::Date>().is_ok() && date.len() == 10,
        "{date}"
    );
    for field in [
        "item_real_status",
        "min_disk",
        "min_ram",
        "region",
        "architecture",
    ] {
        assert!(!val(e, field).is_empty());
    }
    assert_eq!(val(&body["doc"], "p_elems"), "1");

    settle().await;
    let body = z.list(S1, &session).await;
    let e = &Zomro::elems(&body)[0];
    assert_eq!(val(e, "fleio_status"), "Active");
    assert!(val(e, "image_size").parse::<u64>().is_ok_and(|gb| gb >= 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn elem_shapes_with_and_without_quirks() {
    let sim = sim(config()).await;
    let z = Zomro::new(&sim);
    let session = z.login().await;

    assert_eq!(z.list(S1, &session).await["doc"]["elem"], json!([]));
    sim.set_faults(Faults {
        zomro_quirky_elem: true,
        ..Faults::default()
    });
    let mut shapes = BTreeSet::new();
    for _ in 0..12 {
        let body = z.list(S1, &session).await;
        let elem = body["doc"].get("elem");
        assert!(elem.is_none_or(|e| e == &json!({})), "{body}");
        shapes.insert(elem.is_some());
    }
    assert_eq!(
        shapes.len(),
        2,
        "both {{}} and absent occur for empty lists"
    );

    sim.add_foreign_snapshot(S1, "one", false);
    let body = z.list(S1, &session).await;
    assert!(body["doc"]["elem"].is_object(), "bare object: {body}");
    assert_eq!(val(&body["doc"]["elem"], "name"), "one");

    sim.add_foreign_snapshot(S1, "two", false);
    let body = z.list(S1, &session).await;
    assert_eq!(body["doc"]["elem"].as_array().map(Vec::len), Some(2));

    sim.set_faults(Faults::default());
    sim.add_foreign_snapshot(S2, "solo", false);
    let solo = z.list(S2, &session).await;
    assert_eq!(solo["doc"]["elem"].as_array().map(Vec::len), Some(1));
    sim.shutdown().await;
}

#[tokio::test]
async fn paging_honours_p_cnt_and_p_num() {
    let sim = sim(config()).await;
    for i in 0..5 {
        sim.add_foreign_snapshot(S1, &format!("snap{i}"), false);
    }
    let z = Zomro::new(&sim);
    let session = z.login().await;
    let names = |body: &Value| -> Vec<String> {
        Zomro::elems(body).iter().map(|e| val(e, "name")).collect()
    };
    let first = z.list_page(S1, &session, 2, 1).await;
    assert_eq!(names(&first), ["snap0", "snap1"]);
    assert_eq!(val(&first["doc"], "p_elems"), "5");
    let last = z.list_page(S1, &session, 2, 3).await;
    assert_eq!(names(&last), ["snap4"]);
    assert!(names(&z.list_page(S1, &session, 2, 4).await).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_confirmation_protection_and_missing() {
    let sim = sim(config()).await;
    let keep = sim.add_foreign_snapshot(S1, "locked", true);
    let z = Zomro::new(&sim);
    let session = z.login().await;
    z.create(S1, "mine", &session, true).await;
    let mine = sim
        .snapshots(S1)
        .into_iter()
        .find(|s| s.name == "mine")
        .expect("created")
        .id
        .to_string();

    let unconfirmed = z.delete(S1, &mine, &session, false).await;
    assert_eq!(error_type(&unconfirmed), None);
    assert_eq!(sim.snapshots(S1).len(), 2, "no sok=ok, nothing deleted");

    let wrong_instance = z.delete(S2, &mine, &session, true).await;
    assert_eq!(error_type(&wrong_instance).as_deref(), Some("missed"));

    let ok = z.delete(S1, &mine, &session, true).await;
    assert_eq!(error_type(&ok), None, "{ok}");
    assert_eq!(sim.snapshots(S1).len(), 1);
    let again = z.delete(S1, &mine, &session, true).await;
    assert_eq!(error_type(&again).as_deref(), Some("missed"));

    let refused = z.delete(S1, &keep.to_string(), &session, true).await;
    assert!(error_type(&refused).is_some(), "protected: {refused}");
    assert_eq!(sim.snapshots(S1).len(), 1);
    let record = sim.record();
    assert_eq!(record.deletes.len(), 1);
    assert_eq!(record.deletes[0].name.as_deref(), Some("mine"));
    assert_eq!(record.refused_deletes.len(), 1);
    assert_eq!(record.refused_deletes[0].id, keep);
    sim.shutdown().await;
}

#[tokio::test]
async fn zomro_limit_unconfirmed_create_and_bad_instance() {
    let sim = sim(SimConfig {
        zomro_snapshot_limit: 2,
        ..config()
    })
    .await;
    let z = Zomro::new(&sim);
    let session = z.login().await;
    let form = z.create(S1, "draft", &session, false).await;
    assert_eq!(error_type(&form), None);
    assert!(
        sim.snapshots(S1).is_empty(),
        "without sok=ok nothing is created"
    );
    assert_eq!(error_type(&z.create(S1, "a", &session, true).await), None);
    assert_eq!(error_type(&z.create(S1, "b", &session, true).await), None);
    assert!(error_type(&z.create(S1, "c", &session, true).await).is_some());
    assert_eq!(sim.snapshots(S1).len(), 2);
    assert_eq!(sim.record().servers[&S1].snapshot_limit_rejections, 1);
    let empty_name = z.create(S2, "", &session, true).await;
    assert!(error_type(&empty_name).is_some());

    let nowhere = z.create(424_242, "x", &session, true).await;
    assert_eq!(error_type(&nowhere).as_deref(), Some("missed"));
    sim.shutdown().await;
}

#[tokio::test]
async fn xml_without_out_json_and_multipart_bodies() {
    let sim = sim(config()).await;
    let z = Zomro::new(&sim);
    let resp = z
        .raw(&[("func", "auth"), ("username", USER), ("password", PASSWORD)])
        .await
        .expect("send");
    let text = resp.text().await.expect("body");
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.contains("<auth id=\""), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());

    let body = format!(
        "--B0undary\r\nContent-Disposition: form-data; name=\"func\"\r\n\r\nauth\r\n\
--B0undary\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{USER}\r\n\
--B0undary\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{PASSWORD}\r\n\
--B0undary\r\nContent-Disposition: form-data; name=\"out\"\r\n\r\njson\r\n--B0undary--\r\n"
    );
    let resp = z
        .http
        .post(&z.url)
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .body(body)
        .send()
        .await
        .expect("send");
    let json: Value = resp.json().await.expect("json");
    assert!(json["doc"]["auth"]["$id"].is_string(), "{json}");
    sim.shutdown().await;
}
