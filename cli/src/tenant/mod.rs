//! Tenants: the read-only model, the editable TOML document, and the files on disk.

pub mod document;
pub mod model;
pub mod repo;

pub use document::{Edit, TenantDoc};
pub use model::{Permissions, Tenant, User};
