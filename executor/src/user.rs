//! Resolution of a Dockerfile `USER` value (`name`, `uid`, `name:group`, `uid:gid`...) to
//! numeric credentials through the image's `/etc/passwd` and `/etc/group` text, with the
//! rules Docker and BuildKit use (runc's `GetExecUser`):
//!
//! - an empty spec means uid 0, looked up like any other uid;
//! - a numeric user or group never matches a *name*; it needs no entry;
//! - a user found in passwd gets its primary gid from there, and — only when no group is
//!   given explicitly — the gids of every group that lists it as a member;
//! - an explicit group replaces the primary gid and adds no supplementary groups.

use serde::{Deserialize, Serialize};

/// Largest id accepted, as runc and containerd do.
const MAX_ID: u64 = i32::MAX as u64;

/// The numeric identity the command runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, in `/etc/group` order.
    pub additional_gids: Vec<u32>,
    /// The home directory from passwd, `/` when unknown.
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("id {0} out of range")]
    Range(String),
}

enum Arg<'a> {
    Name(&'a str),
    Id(u32),
}

fn parse_arg(s: &str) -> Result<Option<Arg<'_>>, UserError> {
    if s.is_empty() {
        return Ok(None);
    }
    let numeric = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(n) if n <= MAX_ID => Ok(Some(Arg::Id(n as u32))),
            _ => Err(UserError::Range(s.to_owned())),
        };
    }
    Ok(Some(Arg::Name(s)))
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_id(s: &str) -> Option<u32> {
    s.trim().parse::<u32>().ok()
}

/// passwd lines: `name:password:uid:gid:gecos:home:shell`; malformed lines are skipped.
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let mut f = line.trim().split(':');
        let name = f.next()?;
        let _password = f.next();
        let uid = parse_id(f.next()?)?;
        let gid = parse_id(f.next()?)?;
        let _gecos = f.next();
        let home = f.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// group lines: `name:password:gid:member,member`; malformed lines are skipped.
fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let mut f = line.trim().split(':');
        let name = f.next()?;
        let _password = f.next();
        let gid = parse_id(f.next()?)?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some(GroupEntry { name, gid, members })
    })
}

/// Resolves `spec` against the image's passwd and group files (`None` when missing).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Credentials, UserError> {
    let (user_part, group_part) = spec.split_once(':').unwrap_or((spec, ""));
    let user_arg = parse_arg(user_part)?;
    let group_arg = parse_arg(group_part)?;

    let mut creds = Credentials {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".to_owned(),
    };

    let matched = passwd.and_then(|text| {
        passwd_entries(text).find(|e| match &user_arg {
            None => e.uid == 0,
            Some(Arg::Id(id)) => e.uid == *id,
            Some(Arg::Name(n)) => e.name == *n,
        })
    });
    let matched_name = match (matched, &user_arg) {
        (Some(e), _) => {
            creds.uid = e.uid;
            creds.gid = e.gid;
            if !e.home.is_empty() {
                creds.home = e.home.to_owned();
            }
            Some(e.name)
        }
        (None, Some(Arg::Id(id))) => {
            creds.uid = *id;
            None
        }
        (None, Some(Arg::Name(n))) => return Err(UserError::NoUser((*n).to_owned())),
        (None, None) => None,
    };

    match (&group_arg, matched_name) {
        (Some(arg), _) => {
            let found = group.and_then(|text| {
                group_entries(text).find(|g| match arg {
                    Arg::Id(id) => g.gid == *id,
                    Arg::Name(n) => g.name == *n,
                })
            });
            creds.gid = match (found, arg) {
                (Some(g), _) => g.gid,
                (None, Arg::Id(id)) => *id,
                (None, Arg::Name(n)) => return Err(UserError::NoGroup((*n).to_owned())),
            };
        }
        (None, Some(name)) => {
            if let Some(text) = group {
                creds.additional_gids = group_entries(text)
                    .filter(|g| g.members.contains(&name))
                    .map(|g| g.gid)
                    .collect();
            }
        }
        (None, None) => {}
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1::/usr/sbin:/bin/false\n\
                          broken line\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
                         staff:x:50:app,other\n\
                         wheel:x:10:root,app\n\
                         app:x:1000:\n";

    fn creds(uid: u32, gid: u32, extra: &[u32], home: &str) -> Credentials {
        Credentials {
            uid,
            gid,
            additional_gids: extra.to_vec(),
            home: home.to_owned(),
        }
    }

    #[test]
    fn empty_spec_is_root_with_its_groups() {
        let c = resolve("", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c, creds(0, 0, &[10], "/root"));
    }

    #[test]
    fn name_gets_primary_and_member_groups() {
        let c = resolve("app", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c, creds(1000, 1000, &[50, 10], "/home/app"));
    }

    #[test]
    fn numeric_uid_found_in_passwd_uses_its_entry() {
        let c = resolve("1000", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c, creds(1000, 1000, &[50, 10], "/home/app"));
    }

    #[test]
    fn numeric_ids_need_no_entry() {
        let c = resolve("1234:4321", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c, creds(1234, 4321, &[], "/"));
        let c = resolve("1234", None, None).unwrap();
        assert_eq!(c, creds(1234, 0, &[], "/"));
    }

    #[test]
    fn explicit_group_replaces_gid_and_drops_supplementary() {
        let c = resolve("app:staff", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c, creds(1000, 50, &[], "/home/app"));
        let c = resolve("1000:50", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(c, creds(1000, 50, &[], "/home/app"));
    }

    #[test]
    fn numeric_never_matches_a_name() {
        let passwd = "123:x:5:5::/h:/bin/sh\n";
        let c = resolve("123", Some(passwd), None).unwrap();
        assert_eq!(c.uid, 123);
        assert_eq!(c.gid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve("nobody", Some(PASSWD), Some(GROUP)),
            Err(UserError::NoUser("nobody".into()))
        );
        assert_eq!(
            resolve("app:nogroup", Some(PASSWD), Some(GROUP)),
            Err(UserError::NoGroup("nogroup".into()))
        );
        assert_eq!(
            resolve("app", None, None),
            Err(UserError::NoUser("app".into()))
        );
    }

    #[test]
    fn out_of_range_ids_are_errors() {
        assert!(matches!(
            resolve("4294967296", None, None),
            Err(UserError::Range(_))
        ));
        assert!(matches!(
            resolve("-1", None, None),
            Err(UserError::Range(_))
        ));
        assert!(matches!(
            resolve("0:2147483648", None, None),
            Err(UserError::Range(_))
        ));
    }
}
