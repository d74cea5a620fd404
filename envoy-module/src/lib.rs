//! The native fast path's Envoy filter (an Envoy dynamic module): after `jwt_authn` has verified a
//! pass or a bearer token, it holds the token to portcullis's own rules, sets the identity headers
//! as portcullis would, removes portcullis's cookies and marks the request decided so that
//! `ext_authz` is skipped: the work of the generated Lua step, without Lua and without `jwt_authn`'s
//! payload metadata (BENCHMARKS.md counts both). In its callout form (`callout`) the same filter is
//! the whole step: it asks portcullis over HTTP and lets through again what portcullis allowed
//! (`remembered`), with no `jwt_authn` or `ext_authz` filter in the chain.
//!
//! The decisions are in `filter` and `callout` (safe code, tested here); `abi` is the only module
//! with `unsafe`: the C functions Envoy calls and the ones it exports, declared by hand for the few
//! this filter needs.

#![deny(unsafe_op_in_unsafe_fn)]

// The C side needs Envoy's symbols at load time: left out of the unit tests and, without the
// default feature `envoy`, of builds that link the crate into a program (the fuzz target).
#[cfg(all(feature = "envoy", not(test)))]
mod abi;
pub mod callout;
pub mod filter;
pub mod remembered;
