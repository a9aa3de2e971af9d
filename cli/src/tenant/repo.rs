//! Tenant files on disk: `config/tenants/<tenant>.toml`.

use std::fs;
use std::io;

use anyhow::Context as _;

use crate::error::ManageError;
use crate::names::{TenantName, UserName};
use crate::settings::Paths;
use crate::tenant::model::parse_tenant;
use crate::tenant::{Tenant, TenantDoc};

/// Load every tenant, sorted by name. Files that are not `*.toml` are ignored.
pub fn load_all(paths: &Paths) -> anyhow::Result<Vec<Tenant>> {
    let dir = paths.tenants_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", dir.display())),
    };
    let mut tenants = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("failed to read {}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = TenantName::new(&stem).map_err(|e| ManageError::Malformed {
            path: path.clone(),
            line: 1,
            column: 1,
            message: format!("the file name is not a tenant name: {e}"),
        })?;
        let text = fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        tenants.push(parse_tenant(&path, &name, &text)?);
    }
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tenants)
}

/// Load one tenant, or `TenantNotFound`.
pub fn load(paths: &Paths, tenant: &TenantName) -> anyhow::Result<Tenant> {
    let path = paths.tenant_file(tenant.as_str());
    let text = read_existing(paths, tenant)?;
    Ok(parse_tenant(&path, tenant, &text)?)
}

fn read_existing(paths: &Paths, tenant: &TenantName) -> anyhow::Result<String> {
    let path = paths.tenant_file(tenant.as_str());
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ManageError::TenantNotFound {
            tenant: tenant.to_string(),
        }
        .into()),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Load a tenant file for editing.
pub fn load_doc(paths: &Paths, tenant: &TenantName) -> anyhow::Result<TenantDoc> {
    let text = read_existing(paths, tenant)?;
    Ok(TenantDoc::parse(
        &paths.tenant_file(tenant.as_str()),
        &text,
    )?)
}

/// Refuse a user name some tenant already has (NATS user names are global).
pub fn ensure_user_free(tenants: &[Tenant], user: &UserName) -> Result<(), ManageError> {
    match tenants.iter().find(|t| t.user(user.as_str()).is_some()) {
        Some(owner) => Err(ManageError::UserTaken {
            user: user.to_string(),
            owner: owner.name.to_string(),
        }),
        None => Ok(()),
    }
}
