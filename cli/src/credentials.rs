//! Users' credentials files (`.credentials/<tenant>[_<user>].env`, and an NKEY user's seed file
//! `.nk`): found, checked to belong to the user they are read for, and moved from the names
//! older versions gave them.

use std::path::{Path, PathBuf};

use crate::error::ManageError;
use crate::render::env_file::{self, Credentials, Secret};
use crate::settings::Paths;
use crate::tenant::{Tenant, User, UserAuth};

/// The credentials of `user` in `tenant`: from its file, which must hold that user's.
/// A file under the name older versions used is read when it holds this user's credentials.
pub fn read(paths: &Paths, tenant: &str, user: &str) -> anyhow::Result<Credentials> {
    let path = paths.credentials_file(tenant, user);
    if let Some(found) = env_file::read(&path)? {
        if found.user != user {
            return Err(ManageError::WrongCredentials {
                path,
                user: user.to_owned(),
                found: found.user,
            }
            .into());
        }
        return Ok(found);
    }
    let legacy = paths.legacy_credentials_file(tenant, user);
    if legacy != path {
        if let Some(found) = env_file::read(&legacy)?.filter(|c| c.user == user) {
            return Ok(found);
        }
    }
    Err(ManageError::MissingCredentials {
        tenant: tenant.to_owned(),
        user: user.to_owned(),
        path,
    }
    .into())
}

/// Every file that holds `user`'s credentials: its own, the legacy name when that one holds
/// this user's (never another user's file), and an NKEY user's seed file.
pub fn files_of(paths: &Paths, tenant: &str, user: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let path = paths.credentials_file(tenant, user);
    match env_file::read(&path)? {
        // Another user's credentials under this name: never removed on this user's behalf.
        Some(found) if found.user != user => {}
        _ if path.exists() => files.push(path.clone()),
        _ => {}
    }
    let legacy = paths.legacy_credentials_file(tenant, user);
    if legacy != path && env_file::read(&legacy)?.is_some_and(|c| c.user == user) {
        files.push(legacy);
    }
    // An NKEY user's seed file: its name (escaped like the `.env`'s) is this user's alone.
    let seed = paths.seed_file(tenant, user);
    if seed.exists() {
        files.push(seed);
    }
    Ok(files)
}

/// Move the credentials of users of tenants with a `_` in their name from the names older
/// versions gave them (which two users could share) to their own, when the file there holds
/// that user's credentials and the new name is free. Returns what moved. Call under the lock.
pub fn migrate(paths: &Paths, tenants: &[Tenant]) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut moved = Vec::new();
    for tenant in tenants.iter().filter(|t| t.name.as_str().contains('_')) {
        for user in &tenant.users {
            let (name, user) = (tenant.name.as_str(), user.name.as_str());
            let path = paths.credentials_file(name, user);
            let legacy = paths.legacy_credentials_file(name, user);
            if path.exists() || !holds(&legacy, user)? {
                continue;
            }
            std::fs::rename(&legacy, &path).map_err(|e| {
                anyhow::anyhow!(
                    "failed to move {} to {}: {e}",
                    legacy.display(),
                    path.display()
                )
            })?;
            crate::fs::fix_mode(&path, crate::fs::SECRET_FILE_MODE)?;
            moved.push((legacy, path));
        }
    }
    Ok(moved)
}

fn holds(path: &Path, user: &str) -> anyhow::Result<bool> {
    Ok(env_file::read(path)?.is_some_and(|c| c.user == user))
}

/// Why `credentials` cannot log `user` in by the tenant file: a password file for an NKEY user
/// (or the reverse), or a seed whose public key is not the user's. `None` when they match as
/// far as manage can tell (a password is checked by the server, not against its hash here).
pub fn mismatch(user: &User, credentials: &Credentials) -> Option<String> {
    match (&user.auth, &credentials.secret) {
        (UserAuth::Password { .. }, Secret::Password(_)) => None,
        (UserAuth::Nkey { public_key }, Secret::Nkey(seed)) => {
            match crate::nkey::public_key_of(seed) {
                Ok(key) if &key == public_key => None,
                Ok(key) => Some(format!(
                    "the seed is the key {key}'s, not `{}`'s ({public_key})",
                    user.name
                )),
                Err(e) => Some(format!("the seed of `{}` is broken: {e}", user.name)),
            }
        }
        (UserAuth::Nkey { .. }, Secret::Password(_)) => Some(format!(
            "`{}` is an NKEY user, but the file holds a password",
            user.name
        )),
        (UserAuth::Password { .. }, Secret::Nkey(_)) => Some(format!(
            "`{}` logs in with a password, but the file holds an NKEY seed",
            user.name
        )),
    }
}
