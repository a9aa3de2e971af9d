//! The configs these tests run. Every one is also checked with `nats-server -t`.

use std::sync::OnceLock;

use bcrypt::Version;

/// Low cost keeps debug-build logins quick; the cost is read from the hash either way.
const TEST_COST: u32 = 4;

pub(crate) fn hash(password: &str, version: Version) -> String {
    bcrypt::hash_with_result(password, TEST_COST)
        .unwrap()
        .format_for_version(version)
}

struct Hashes {
    shop: String,
    order: String,
    auditor: String,
}

fn hashes() -> &'static Hashes {
    static HASHES: OnceLock<Hashes> = OnceLock::new();
    HASHES.get_or_init(|| Hashes {
        shop: hash("shoppw", Version::TwoA),
        order: hash("pw2", Version::TwoB),
        auditor: hash("auditpw", Version::TwoY),
    })
}

pub(crate) const HEADER: &str = "host: 127.0.0.1\nport: -1\nhttp: \"127.0.0.1:-1\"\n";

/// SHOP's users; `extra` is spliced into the users list.
pub(crate) fn shop_users(extra: &str) -> String {
    let h = hashes();
    format!(
        r#"
      {{ user: shop, password: "{shop}" }}
      {{
        user: order-service, password: "{order}"
        permissions: {{
          publish: ["orders.*", "events.order.*"]
          subscribe: ["payments.*", "inventory.*"]
        }}
      }}
      {{
        user: auditor, password: "{auditor}"
        permissions: {{
          publish: {{ deny: ["orders.>"] }}
          subscribe: {{ allow: ["orders.>", "q.> workers"], deny: ["orders.secret", "orders.*.private"] }}
        }}
      }}
      {{ user: pricing, password: pricingpw, permissions: {{ subscribe: "pricing.>", allow_responses: true }} }}
      {{
        user: quoter, password: quoterpw
        permissions: {{ publish: {{ deny: [">"] }}, subscribe: "quote.>", allow_responses: {{ max: 2, expires: "1m" }} }}
      }}
      {{ user: slow, password: slowpw, permissions: {{ subscribe: "slow.>", allow_responses: {{ max: 5, expires: "300ms" }} }} }}
      {extra}
"#,
        shop = h.shop,
        order = h.order,
        auditor = h.auditor,
    )
}

/// SHOP, BLOG and SYS (named as the system account).
pub(crate) fn base() -> String {
    with_accounts(&shop_users(""), "")
}

/// The base accounts; `blog_users` replaces BLOG's users, `more` adds accounts.
pub(crate) fn with_accounts(shop: &str, more: &str) -> String {
    with_blog(shop, "{ user: blog, password: blogpw }", more)
}

pub(crate) fn with_blog(shop: &str, blog_users: &str, more: &str) -> String {
    format!(
        "{HEADER}accounts {{\n  SHOP {{ users: [ {shop} ] }}\n  BLOG {{ users: [ {blog_users} ] }}\n  SYS {{ users: [ {{ user: sys, password: syspw }} ] }}\n  {more}\n}}\nsystem_account: SYS\n"
    )
}
