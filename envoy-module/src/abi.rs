//! The C ABI between Envoy and this module: the event hooks Envoy looks up (`envoy_dynamic_module_on_*`)
//! and the few callbacks it exports that the filter uses (`envoy_dynamic_module_callback_*`), as
//! Envoy's `abi.h` defines them. The only `unsafe` of the project lives here: the pointers Envoy
//! hands over are valid for the duration of the call, as the ABI promises.
//!
//! Envoy requires every per-stream hook of an HTTP filter to exist; the ones this filter has no use
//! for take no arguments (the C calling convention lets a callee ignore them) and answer Continue.

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::filter::{Request, Settings, on_request_headers};

/// A buffer either side owns: `{ptr, length}`, as `envoy_dynamic_module_type_{module,envoy}_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Buffer {
    ptr: *const u8,
    length: usize,
}

impl Buffer {
    const NONE: Buffer = Buffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    fn of(s: &str) -> Buffer {
        Buffer {
            ptr: s.as_ptr(),
            length: s.len(),
        }
    }

    /// # Safety
    /// `ptr` is null or points at `length` readable bytes for `'a`.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the caller's promise.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADERS: u32 = 0;
/// The `Continue` of every `envoy_dynamic_module_type_on_http_filter_*_status`.
const CONTINUE: u32 = 0;
/// The ABI version this was written against; another only makes Envoy log a warning.
const ABI_VERSION: &[u8] = b"v0.2.0\0";

unsafe extern "C" {
    fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        result: *mut Buffer,
        index: usize,
        count: *mut usize,
    ) -> bool;
    /// A value of `Buffer::NONE` removes the header.
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(
        filter: *mut c_void,
        namespace: Buffer,
        key: Buffer,
        value: bool,
    );
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: *mut c_void,
        namespace: Buffer,
        key: Buffer,
        value: Buffer,
    );
}

/// The request headers of the stream Envoy is calling about.
struct EnvoyRequest(*mut c_void);

impl Request for EnvoyRequest {
    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut count = 0usize;
        let mut index = 0;
        loop {
            let mut value = Buffer::NONE;
            // SAFETY: the filter pointer is the one Envoy passed to this call; `value` and `count`
            // are writable; the value Envoy returns is copied before the next callback.
            let found = unsafe {
                envoy_dynamic_module_callback_http_get_header(
                    self.0,
                    REQUEST_HEADERS,
                    Buffer::of(name),
                    &mut value,
                    index,
                    if index == 0 {
                        &mut count
                    } else {
                        std::ptr::null_mut()
                    },
                )
            };
            if !found {
                break;
            }
            // SAFETY: Envoy's buffer is valid until the headers change, which is after this copy.
            out.push(unsafe { value.bytes() }.to_vec());
            index += 1;
            if index >= count {
                break;
            }
        }
        out
    }

    fn set(&mut self, name: &str, value: &str) {
        // SAFETY: as in `values`; Envoy copies both buffers.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                REQUEST_HEADERS,
                Buffer::of(name),
                Buffer::of(value),
            );
        }
    }

    fn remove(&mut self, name: &str) {
        // SAFETY: as in `set`.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                REQUEST_HEADERS,
                Buffer::of(name),
                Buffer::NONE,
            );
        }
    }

    fn add(&mut self, name: &str, value: &str) {
        // SAFETY: as in `set`.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                REQUEST_HEADERS,
                Buffer::of(name),
                Buffer::of(value),
            );
        }
    }

    fn decided(&mut self, user: Option<&str>) {
        // SAFETY: as in `set`; Envoy copies the strings into the stream's metadata.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(
                self.0,
                Buffer::of("portcullis"),
                Buffer::of("fast"),
                true,
            );
            if let Some(user) = user {
                envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                    self.0,
                    Buffer::of("portcullis"),
                    Buffer::of("user"),
                    Buffer::of(user),
                );
            }
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// The filter's config from `filter_config` (JSON in a `google.protobuf.StringValue`); null, which
/// makes Envoy refuse the config, when it does not parse.
///
/// # Safety
/// `config` points at `config.length` bytes for the duration of the call.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    _name: Buffer,
    config: Buffer,
) -> *const c_void {
    // SAFETY: the caller's promise.
    let json = unsafe { config.bytes() };
    match catch_unwind(|| Settings::from_json(json)) {
        Ok(Ok(settings)) => Box::into_raw(Box::new(settings)).cast(),
        Ok(Err(e)) => {
            eprintln!("portcullis fast-path filter: {e}");
            std::ptr::null()
        }
        Err(_) => std::ptr::null(),
    }
}

/// # Safety
/// `settings` is a pointer `envoy_dynamic_module_on_http_filter_config_new` returned, destroyed
/// once, after every filter made from it.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(settings: *mut c_void) {
    // SAFETY: the caller's promise; the box was made in `config_new`.
    drop(unsafe { Box::from_raw(settings.cast::<Settings>()) });
}

/// A stream's filter holds nothing of its own: it is its config, shared (no allocation a request).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    settings: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    settings
}

/// # Safety
/// `filter` is the stream Envoy calls about; `settings` what `on_http_filter_new` returned.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: *mut c_void,
    settings: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the config outlives its filters.
    let settings = unsafe { &*settings.cast::<Settings>() };
    let mut request = EnvoyRequest(filter);
    // A panic must not unwind into Envoy: the request then goes on undecided, to ext_authz.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        on_request_headers(settings, &mut request)
    }));
    CONTINUE
}

macro_rules! continue_hooks {
    ($($name:ident),*) => {$(
        #[unsafe(no_mangle)]
        extern "C" fn $name() -> u32 {
            CONTINUE
        }
    )*};
}

macro_rules! ignored_hooks {
    ($($name:ident),*) => {$(
        #[unsafe(no_mangle)]
        extern "C" fn $name() {}
    )*};
}

continue_hooks!(
    envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_request_trailers,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_trailers
);

ignored_hooks!(
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_destroy,
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark
);
