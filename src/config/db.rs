//! `[daemon] db`: where the store lives. A path or a `sqlite:` URL names a SQLite file (the
//! default); a `postgres://` or `postgresql://` URL names a PostgreSQL database shared by a
//! fleet of instances (issue 22). The database password never sits in the configuration or the
//! URL, which end up in world-readable files and in logs: `db_password_env`,
//! `db_password_file` or `db_password_credential` name where it is read from, like a target's
//! `api_key_*` (`api_key.rs`), and it is read only when the store is opened.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Table;

use super::api_key::{ApiKeySource, is_credential_name, is_env_name};
use super::validator::Validator;

/// The keys that name where the database password is read from.
pub(super) const DB_PASSWORD_KEYS: [&str; 3] = [
    "db_password_env",
    "db_password_file",
    "db_password_credential",
];

/// Where the store is.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its URL (without a password) and where the password is read from,
    /// if the server asks for one (`PGPASSWORD` and `~/.pgpass` apply when none is named).
    Postgres {
        url: String,
        password: Option<ApiKeySource>,
    },
}

impl StoreLocation {
    /// Reads `db` as written in the configuration (or given as `--db`): a `postgres://` or
    /// `postgresql://` URL, a `sqlite:` URL or a path, the latter two resolved against `base`.
    /// A URL that carries a password is refused, naming the keys that should say where it is.
    pub fn parse(text: &str, base: &Path) -> Result<StoreLocation, String> {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            if url_has_password(text) {
                return Err(format!(
                    "expected a postgres url without a password, found one with a password: \
                     name where it is read from with {} instead",
                    DB_PASSWORD_KEYS.join(", ")
                ));
            }
            return Ok(StoreLocation::Postgres {
                url: text.to_string(),
                password: None,
            });
        }
        if lower.starts_with("postgres:") || lower.starts_with("postgresql:") {
            return Err(format!(
                "expected a url such as postgres://user@host/database, found {}",
                display_url(text)
            ));
        }
        let path = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("sqlite:") => {
                let rest = text.get(7..).unwrap_or_default();
                // `sqlite:///abs/path` and `sqlite://rel` as sqlx writes them; `sqlite:path` too.
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                // sqlx's query parameters (`?mode=rwc`) have no meaning here: the store sets
                // its own options.
                rest.split('?').next().unwrap_or_default()
            }
            _ => text,
        };
        if path.trim().is_empty() {
            return Err("expected a database file path, found an empty one".into());
        }
        Ok(StoreLocation::Sqlite(base.join(path)))
    }

    /// The SQLite file, if the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreLocation::Sqlite(path) => Some(path),
            StoreLocation::Postgres { .. } => None,
        }
    }

    /// Whether the store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreLocation::Postgres { .. })
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres { url, .. } => write!(f, "{}", display_url(url)),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "Sqlite({path:?})"),
            StoreLocation::Postgres { url, password } => f
                .debug_struct("Postgres")
                .field("url", &display_url(url))
                .field("password", password)
                .finish(),
        }
    }
}

/// The user information of a URL (between `://` and the host), if any.
fn user_info(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').map(|(info, _)| info)
}

/// Whether a postgres URL carries a password: `user:password@host`, or a `password` query
/// parameter (which sqlx reads too).
pub(crate) fn url_has_password(url: &str) -> bool {
    if user_info(url).is_some_and(|info| info.contains(':')) {
        return true;
    }
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("password"))
    })
}

/// A URL as it may be shown: any password in it replaced (it is refused at load, but a URL
/// given to `open_location` directly could still carry one).
pub fn display_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(info) = user_info(url) {
        if let Some((user, _)) = info.split_once(':') {
            out = out.replacen(info, &format!("{user}:***"), 1);
        }
    }
    if let Some((head, query)) = out.clone().split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}?{}", query.join("&"));
    }
    out
}

/// `db` and the `db_password_*` keys of `[daemon]`; the default file when `db` is not given.
pub(super) fn store_location(
    v: &mut Validator,
    t: &Table,
    base: &Path,
    default: &str,
) -> StoreLocation {
    let location = match v.secret_safe_string(
        t,
        "db",
        "daemon.db",
        "a database file path, a sqlite: url or a postgres:// url",
    ) {
        Ok(Some(text)) => match StoreLocation::parse(text, base) {
            Ok(location) => location,
            Err(message) => {
                v.issue("daemon.db", message);
                StoreLocation::Sqlite(base.join(default))
            }
        },
        _ => StoreLocation::Sqlite(base.join(default)),
    };
    let password = db_password(v, t, base);
    match (location, password) {
        (StoreLocation::Postgres { url, .. }, password) => {
            StoreLocation::Postgres { url, password }
        }
        (sqlite, Some(_)) => {
            v.issue(
                "daemon.db",
                format!(
                    "expected {} only with a postgres:// db, found them with a sqlite database",
                    DB_PASSWORD_KEYS.join(", ")
                ),
            );
            sqlite
        }
        (sqlite, None) => sqlite,
    }
}

/// Exactly one of the `db_password_*` keys, or none.
fn db_password(v: &mut Validator, t: &Table, base: &Path) -> Option<ApiKeySource> {
    let present: Vec<&str> = DB_PASSWORD_KEYS
        .iter()
        .copied()
        .filter(|k| t.contains_key(*k))
        .collect();
    if present.len() > 1 {
        v.issue(
            "daemon",
            format!(
                "expected at most one of {}, found {}",
                DB_PASSWORD_KEYS.join(", "),
                present.join(" and ")
            ),
        );
        return None;
    }
    let env_name = "an environment variable name (letters, digits and _, not starting with a digit; the value is not shown in case it is a password)";
    if let Ok(Some(name)) =
        v.secret_safe_string(t, "db_password_env", "daemon.db_password_env", env_name)
    {
        if !is_env_name(name) {
            v.issue(
                "daemon.db_password_env",
                format!("expected {env_name}, found another string"),
            );
            return None;
        }
        return Some(ApiKeySource::Env(name.to_string()));
    }
    let file = "a path to a file holding only the password";
    if let Ok(Some(path)) =
        v.secret_safe_string(t, "db_password_file", "daemon.db_password_file", file)
    {
        return Some(ApiKeySource::File(base.join(path)));
    }
    let credential = "a systemd credential name (one file name, as in LoadCredential=NAME:PATH; the value is not shown in case it is a password)";
    if let Ok(Some(name)) = v.secret_safe_string(
        t,
        "db_password_credential",
        "daemon.db_password_credential",
        credential,
    ) {
        if !is_credential_name(name) {
            v.issue(
                "daemon.db_password_credential",
                format!("expected {credential}, found another string"),
            );
            return None;
        }
        return Some(ApiKeySource::Credential(name.to_string()));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreLocation, String> {
        StoreLocation::parse(text, Path::new("/etc/teewatch"))
    }

    #[test]
    fn paths_and_sqlite_urls_name_a_file_beside_the_configuration() {
        let file = |p: &str| StoreLocation::Sqlite(PathBuf::from(p));
        assert_eq!(parse("history.db"), Ok(file("/etc/teewatch/history.db")));
        assert_eq!(parse("/var/lib/t.db"), Ok(file("/var/lib/t.db")));
        assert_eq!(
            parse("sqlite:history.db"),
            Ok(file("/etc/teewatch/history.db"))
        );
        assert_eq!(parse("sqlite:///var/lib/t.db"), Ok(file("/var/lib/t.db")));
        assert_eq!(
            parse("SQLITE://state/t.db?mode=rwc"),
            Ok(file("/etc/teewatch/state/t.db"))
        );
        assert!(parse("sqlite:").is_err());
    }

    #[test]
    fn postgres_urls_are_kept_whole_and_a_password_in_them_is_refused() {
        for url in [
            "postgres://teewatch@db.internal:5432/teewatch",
            "postgresql://teewatch@db.internal/teewatch?sslmode=verify-full",
            "postgres:///teewatch?host=/run/postgresql",
        ] {
            assert_eq!(
                parse(url),
                Ok(StoreLocation::Postgres {
                    url: url.into(),
                    password: None
                })
            );
        }
        for url in [
            "postgres://teewatch:s3cret@db.internal/teewatch",
            "postgresql://db.internal/teewatch?user=t&password=s3cret",
        ] {
            let error = parse(url).unwrap_err();
            assert!(
                error.contains("db_password_env, db_password_file, db_password_credential"),
                "{error}"
            );
            assert!(!error.contains("s3cret"), "{error}");
        }
        assert!(parse("postgres:teewatch").is_err());
    }

    #[test]
    fn a_shown_url_never_carries_a_password() {
        let location = StoreLocation::Postgres {
            url: "postgres://u:s3cret@h/d?password=s3cret&sslmode=require".into(),
            password: Some(ApiKeySource::Env("PGPASS".into())),
        };
        for shown in [location.to_string(), format!("{location:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("u:***@h/d"), "{shown}");
        }
    }

    /// `[daemon]` as written, read with a fresh validator: the location and the issues.
    fn daemon(text: &str) -> (StoreLocation, Vec<String>) {
        let table: Table = toml::from_str(text).unwrap();
        let mut v = Validator::default();
        let location = store_location(&mut v, &table, Path::new("/etc/teewatch"), "teewatch.db");
        let issues = v
            .issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        (location, issues)
    }

    #[test]
    fn the_password_source_is_read_from_exactly_one_key() {
        let url = "postgres://teewatch@db/teewatch";
        let with = |key: &str, value: &str| daemon(&format!("db = \"{url}\"\n{key} = \"{value}\""));
        let postgres = |password| StoreLocation::Postgres {
            url: url.into(),
            password: Some(password),
        };
        assert_eq!(
            with("db_password_env", "TEEWATCH_DB_PASSWORD"),
            (
                postgres(ApiKeySource::Env("TEEWATCH_DB_PASSWORD".into())),
                vec![]
            )
        );
        assert_eq!(
            with("db_password_file", "pgpass"),
            (
                postgres(ApiKeySource::File("/etc/teewatch/pgpass".into())),
                vec![]
            )
        );
        assert_eq!(
            with("db_password_credential", "pgpass"),
            (postgres(ApiKeySource::Credential("pgpass".into())), vec![])
        );
        // A bad name is refused without repeating it (it may be the password itself).
        let (_, issues) = with("db_password_env", "hunter2 with spaces");
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].starts_with("daemon.db_password_env: expected an environment variable name")
        );
        assert!(!issues[0].contains("hunter2"), "{issues:?}");
        let (_, issues) = with("db_password_credential", "../etc/shadow");
        assert!(
            issues[0]
                .starts_with("daemon.db_password_credential: expected a systemd credential name")
        );
        // Two sources, or a source for a SQLite file, are refused naming the keys.
        let (_, issues) = daemon(&format!(
            "db = \"{url}\"\ndb_password_env = \"A\"\ndb_password_file = \"b\""
        ));
        assert_eq!(
            issues,
            [
                "daemon: expected at most one of db_password_env, db_password_file, db_password_credential, found db_password_env and db_password_file"
            ]
        );
        let (location, issues) = daemon("db = \"sqlite:t.db\"\ndb_password_env = \"A\"");
        assert_eq!(location, StoreLocation::Sqlite("/etc/teewatch/t.db".into()));
        assert_eq!(
            issues,
            [
                "daemon.db: expected db_password_env, db_password_file, db_password_credential only with a postgres:// db, found them with a sqlite database"
            ]
        );
        // No db at all: the default file beside the configuration.
        assert_eq!(
            daemon(""),
            (
                StoreLocation::Sqlite("/etc/teewatch/teewatch.db".into()),
                vec![]
            )
        );
        // A password in the URL is reported at daemon.db without the password.
        let (_, issues) = daemon("db = \"postgres://u:hunter2@db/t\"");
        assert_eq!(issues.len(), 1);
        assert!(issues[0].starts_with("daemon.db: expected a postgres url without a password"));
        assert!(!issues[0].contains("hunter2"), "{issues:?}");
    }
}
