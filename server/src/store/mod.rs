//! JetStream message stores. CONTRACT: see the store work's module docs.
