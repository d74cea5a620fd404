//! HTTP endpoints: the admin port today; an HTTP ext_authz / forward-auth adapter later.

pub mod admin;
