//! Naming objects the way kubectl does: `vpss/pre-upgrade`, `snapshot/pre-upgrade`,
//! `vpssnapshot.vpsnap.dev/pre-upgrade`, or a bare name looked up across vpsnap's kinds.
use kube::Resource;
use serde::de::DeserializeOwned;

use super::CliError;
use super::connect::Ctx;
use crate::api::{VpsBackup, VpsProvider, VpsRestore, VpsSnapshot, VpsSnapshotSchedule};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Backup,
    Schedule,
    Restore,
    Provider,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Snapshot,
        Kind::Backup,
        Kind::Schedule,
        Kind::Restore,
        Kind::Provider,
    ];

    /// The resource name kubectl prints (`vpssnapshot/x`).
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Snapshot => "vpssnapshot",
            Kind::Backup => "vpsbackup",
            Kind::Schedule => "vpssnapshotschedule",
            Kind::Restore => "vpsrestore",
            Kind::Provider => "vpsprovider",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Snapshot => "VpsSnapshot",
            Kind::Backup => "VpsBackup",
            Kind::Schedule => "VpsSnapshotSchedule",
            Kind::Restore => "VpsRestore",
            Kind::Provider => "VpsProvider",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::Snapshot => &[
                "vpss",
                "vpssnapshot",
                "vpssnapshots",
                "snapshot",
                "snapshots",
            ],
            Kind::Backup => &["vpsb", "vpsbackup", "vpsbackups", "backup", "backups"],
            Kind::Schedule => &[
                "vpsss",
                "vpssnapshotschedule",
                "vpssnapshotschedules",
                "schedule",
                "schedules",
            ],
            Kind::Restore => &["vpsr", "vpsrestore", "vpsrestores", "restore", "restores"],
            Kind::Provider => &[
                "vpsp",
                "vpsprovider",
                "vpsproviders",
                "provider",
                "providers",
            ],
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        let lower = text.to_ascii_lowercase();
        let bare = lower
            .strip_suffix(".vpsnap.dev")
            .or_else(|| lower.strip_suffix(".v1alpha1.vpsnap.dev"))
            .unwrap_or(&lower);
        Kind::ALL.into_iter().find(|k| k.aliases().contains(&bare))
    }
}

/// A named object of one of vpsnap's kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjRef {
    pub kind: Kind,
    pub name: String,
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.resource(), self.name)
    }
}

/// `KIND/NAME` or `NAME`.
pub fn parse(text: &str) -> Result<(Option<Kind>, String), CliError> {
    match text.split_once('/') {
        Some((kind, name)) if !name.is_empty() && !name.contains('/') => match Kind::parse(kind) {
            Some(k) => Ok((Some(k), name.to_owned())),
            None => Err(CliError::Usage(format!(
                "{text:?}: unknown kind {kind:?}; use vpss (VpsSnapshot), vpsb (VpsBackup), \
                 vpsss (VpsSnapshotSchedule), vpsr (VpsRestore) or vpsp (VpsProvider)"
            ))),
        },
        None if !text.is_empty() => Ok((None, text.to_owned())),
        _ => Err(CliError::Usage(format!(
            "{text:?} is not an object: use KIND/NAME (e.g. vpss/pre-upgrade) or NAME"
        ))),
    }
}

async fn exists<K>(ctx: &Ctx, name: &str) -> Result<bool, CliError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match ctx.api::<K>().get_opt(name).await {
        Ok(found) => Ok(found.is_some()),
        // A kind the user may not read cannot be the one they mean.
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(false),
        Err(e) => Err(CliError::kube(&format!("get {name}"), e)),
    }
}

/// Resolves `text` to one object; a bare name must match exactly one kind.
pub async fn resolve(ctx: &Ctx, text: &str) -> Result<ObjRef, CliError> {
    let (kind, name) = parse(text)?;
    if let Some(kind) = kind {
        return Ok(ObjRef { kind, name });
    }
    let mut found = Vec::new();
    for kind in Kind::ALL {
        let hit = match kind {
            Kind::Snapshot => exists::<VpsSnapshot>(ctx, &name).await?,
            Kind::Backup => exists::<VpsBackup>(ctx, &name).await?,
            Kind::Schedule => exists::<VpsSnapshotSchedule>(ctx, &name).await?,
            Kind::Restore => exists::<VpsRestore>(ctx, &name).await?,
            Kind::Provider => exists::<VpsProvider>(ctx, &name).await?,
        };
        if hit {
            found.push(ObjRef {
                kind,
                name: name.clone(),
            });
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CliError::Usage(format!(
            "no vpsnap object named {name:?} in namespace {}",
            ctx.namespace
        ))),
        _ => Err(CliError::Usage(format!(
            "{name:?} names several objects: {}; say which, e.g. {}",
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            found[0]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_like_kubectl() {
        assert_eq!(parse("vpss/a").unwrap(), (Some(Kind::Snapshot), "a".into()));
        assert_eq!(
            parse("VpsBackup/b").unwrap(),
            (Some(Kind::Backup), "b".into())
        );
        assert_eq!(
            parse("vpssnapshotschedules.vpsnap.dev/n").unwrap(),
            (Some(Kind::Schedule), "n".into())
        );
        assert_eq!(
            parse("restore/r").unwrap(),
            (Some(Kind::Restore), "r".into())
        );
        assert_eq!(parse("plain").unwrap(), (None, "plain".into()));
        let e = parse("pod/x").unwrap_err().to_string();
        assert!(
            e.contains("unknown kind \"pod\"") && e.contains("vpss"),
            "{e}"
        );
        assert!(parse("vpss/").is_err());
        assert!(parse("").is_err());
        assert_eq!(
            ObjRef {
                kind: Kind::Provider,
                name: "p".into()
            }
            .to_string(),
            "vpsprovider/p"
        );
    }
}
