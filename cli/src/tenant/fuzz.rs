//! The fuzz entry point for tenant files (`fuzz/fuzz_targets/tenant_toml.rs`, replayed on
//! stable by `cli/tests/it/fuzz_replay.rs`).

use std::path::Path;

use crate::names::{Size, TenantName, UserName};
use crate::tenant::model::parse_tenant;
use crate::tenant::{Permissions, TenantDoc};

/// A tenant file's text: parsing must not panic; a file that parses must survive an edit
/// (add and remove a user) and still parse to the same tenant; every size it accepts must
/// mean the same byte count once rendered into nats.conf and read by the server's rule.
pub fn fuzz_tenant_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("config/tenants/fuzz.toml");
    let Ok(name) = TenantName::new("fuzz") else {
        return;
    };
    let parsed = parse_tenant(path, &name, text);
    if let Ok(tenant) = &parsed {
        for size in [tenant.memory, tenant.storage] {
            let rendered = size.to_string();
            assert_eq!(
                natsd_conf::size::conf_size(&rendered),
                i64::try_from(size.bytes()).ok(),
                "{rendered} in nats.conf"
            );
        }
    }
    if let Ok(mut doc) = TenantDoc::parse(path, text) {
        let Ok(user) = UserName::new("fuzzer") else {
            return;
        };
        let hash = crate::tenant::UserAuth::Password {
            hash: "$2a$11$abcdefghijklmnopqrstuuVyWTEHw.8mNKCpiHmjqJfUZ3h1kLGq6".into(),
        };
        let added = doc.add_user(path, &user, &hash, &Permissions::default());
        let removed = doc.remove_user(path, &user);
        if let (Ok(crate::tenant::Edit::Added), Ok(_), Ok(before)) = (added, removed, &parsed) {
            let after = parse_tenant(path, &name, &doc.to_string());
            assert_eq!(
                after.map(|t| format!("{t:?}")).ok(),
                Some(format!("{before:?}")),
                "an add and remove changed the tenant"
            );
        }
    }
    // Sizes as written in a tenant file.
    if let Ok(size) = Size::parse(text) {
        let rendered = size.to_string();
        assert_eq!(
            Size::parse(&rendered),
            Ok(size),
            "{text:?} renders as {rendered}"
        );
    }
}
