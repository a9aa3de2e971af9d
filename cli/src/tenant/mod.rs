//! Tenants: the read-only model, the editable TOML document, and the files on disk.

pub mod document;
#[doc(hidden)]
pub mod fuzz;
pub mod model;
pub mod repo;

pub use document::{Edit, TenantDoc};
pub use fuzz::fuzz_tenant_toml;
pub use model::{AuthKind, Permissions, Tenant, User, UserAuth};
