//! Errors and exit codes (listed in `kubectl vpsnap --help`).
use std::process::ExitCode;

/// What the process exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done: created, Ready, Succeeded, shown.
    Ok = 0,
    /// Failed or blocked: LimitReached, a failed restore, a refused confirmation.
    Failed = 1,
    /// Bad arguments, or an object that does not exist or does not fit the request
    /// (clap's own usage errors exit 2 as well).
    Usage = 2,
    /// `--wait` ran out of time.
    Timeout = 3,
    /// The Kubernetes API refused (RBAC) or could not be reached.
    Api = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The request cannot work as given; the message names the argument and the fix.
    #[error("{0}")]
    Usage(String),
    /// The object failed, is blocked, or the user said no.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Api(String),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage(_) => Exit::Usage,
            CliError::Failed(_) => Exit::Failed,
            CliError::Timeout(_) => Exit::Timeout,
            CliError::Api(_) => Exit::Api,
        }
    }

    /// A Kubernetes API error in words a user can act on. `what` names the request, e.g.
    /// `create vpssnapshots`.
    pub fn kube(what: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 403 => CliError::Api(format!(
                "{what}: forbidden by RBAC ({}). Ask for a Role like deploy/rbac/plugin-user.yaml \
                 in this namespace.",
                s.message
            )),
            kube::Error::Api(s) if s.code == 404 => {
                CliError::Usage(format!("{what}: {}", s.message))
            }
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                CliError::Usage(format!("{what}: rejected by the API server: {}", s.message))
            }
            kube::Error::Api(s) => CliError::Api(format!("{what}: {} ({})", s.message, s.code)),
            other => CliError::Api(format!("{what}: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(Exit::Ok as u8, 0);
        assert_eq!(Exit::Failed as u8, 1);
        assert_eq!(Exit::Usage as u8, 2);
        assert_eq!(Exit::Timeout as u8, 3);
        assert_eq!(Exit::Api as u8, 4);
        assert_eq!(CliError::Timeout("x".into()).exit(), Exit::Timeout);
    }
}
