//! `vpsnap probe URL`: one HTTP GET that succeeds only on a 2xx answer. The chart's `helm test`
//! hook runs it from the operator's own image (distroless: no shell, no curl) against the
//! metrics Service's `/readyz`.
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// URL to GET, e.g. http://vpsnap-metrics.vpsnap-system.svc:8080/readyz
    pub url: String,
    /// Give up after this long (jiff-style duration, e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = crate::api::duration::parse)]
    pub timeout: Duration,
}

/// Prints what it got; an error says what failed and never repeats a body at length.
pub async fn run(args: ProbeArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::provider::install_crypto_provider();
    let client = reqwest::Client::builder().timeout(args.timeout).build()?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .map_err(|e| format!("GET {}: {e}", args.url))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(200).collect();
    if status.is_success() {
        println!("GET {}: {status} {body}", args.url);
        Ok(())
    } else {
        Err(format!("GET {}: {status} {body}", args.url).into())
    }
}
