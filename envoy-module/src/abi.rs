//! The C ABI between Envoy and this module: the event hooks Envoy looks up (`envoy_dynamic_module_on_*`)
//! and the few callbacks it exports that the filter uses (`envoy_dynamic_module_callback_*`), as
//! Envoy's `abi.h` defines them. The only `unsafe` of the project lives here: the pointers Envoy
//! hands over are valid for the duration of the call, as the ABI promises.
//!
//! Envoy requires every per-stream hook of an HTTP filter to exist; the ones this filter has no use
//! for take no arguments (the C calling convention lets a callee ignore them) and answer Continue.

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::callout::{self, Answered, Next, Routed};
use crate::filter::{self, Request};

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

/// `envoy_dynamic_module_type_module_http_header` and `..._envoy_http_header`: a header's name and
/// value, either side's.
#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    key: Buffer,
    value: Buffer,
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`, `..._ResponseHeader`.
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
/// The `Continue` of every `envoy_dynamic_module_type_on_http_filter_*_status`.
const CONTINUE: u32 = 0;
/// `..._request_headers_status_StopAllIterationAndWatermark`: nothing of the request (body
/// included) goes on until the answer, as `ext_authz` holds it.
const STOP_ALL: u32 = 4;
/// `envoy_dynamic_module_type_metadata_source_Route`.
const ROUTE_METADATA: u32 = 1;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`, `..._callout_result_Success`.
const SUCCESS: u32 = 0;
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
    fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: *mut c_void,
        source: u32,
        namespace: Buffer,
        key: Buffer,
        result: *mut Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, kind: u32)
    -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        kind: u32,
        result: *mut Header,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id: *mut u64,
        cluster: Buffer,
        headers: *const Header,
        headers_size: usize,
        body: Buffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *const Header,
        headers_size: usize,
        body: Buffer,
        details: Buffer,
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

impl Routed for EnvoyRequest {
    fn fast(&self) -> Option<Vec<u8>> {
        let mut value = Buffer::NONE;
        // SAFETY: as in `values`; the value is copied before the next callback.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                self.0,
                ROUTE_METADATA,
                Buffer::of("portcullis"),
                Buffer::of(callout::ROUTE_KEY),
                &mut value,
            )
        };
        // SAFETY: Envoy's buffer, valid for this call.
        found.then(|| unsafe { value.bytes() }.to_vec())
    }

    fn note(&mut self, key: &str, value: &str) {
        // SAFETY: as in `set`; Envoy copies the strings into the stream's metadata.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.0,
                Buffer::of("portcullis"),
                Buffer::of(key),
                Buffer::of(value),
            );
        }
    }

    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        // SAFETY: as in `values`; `headers` has room for the `size` Envoy reports.
        unsafe {
            let size = envoy_dynamic_module_callback_http_get_headers_size(self.0, REQUEST_HEADERS);
            let mut headers = vec![
                Header {
                    key: Buffer::NONE,
                    value: Buffer::NONE
                };
                size
            ];
            if size == 0
                || !envoy_dynamic_module_callback_http_get_headers(
                    self.0,
                    REQUEST_HEADERS,
                    headers.as_mut_ptr(),
                )
            {
                return Vec::new();
            }
            headers
                .iter()
                .map(|h| (h.key.bytes().to_vec(), h.value.bytes().to_vec()))
                .collect()
        }
    }
}

/// The filter's config: the native step after `jwt_authn`, or the callout form.
enum Config {
    Native(filter::Settings),
    Callout(callout::Settings),
}

impl Config {
    /// The callout form's config names portcullis's cluster; the native step's does not.
    fn from_json(json: &[u8]) -> Result<Self, String> {
        let callout = serde_json::from_slice::<serde_json::Value>(json)
            .map_err(|e| format!("the filter's config: {e}"))?
            .get("cluster")
            .is_some();
        if callout {
            callout::Settings::from_json(json).map(Config::Callout)
        } else {
            filter::Settings::from_json(json).map(Config::Native)
        }
    }
}

/// One stream's filter: its config, and in the callout form what the answer left for the response.
struct Stream {
    config: *const Config,
    set_cookies: Vec<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn header(name: &str, value: &str) -> Header {
    Header {
        key: Buffer::of(name),
        value: Buffer::of(value),
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
    match catch_unwind(|| Config::from_json(json)) {
        Ok(Ok(config)) => Box::into_raw(Box::new(config)).cast(),
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
    drop(unsafe { Box::from_raw(settings.cast::<Config>()) });
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    Box::into_raw(Box::new(Stream {
        config: config.cast(),
        set_cookies: Vec::new(),
    }))
    .cast()
}

/// # Safety
/// `stream` is what `on_http_filter_new` returned, destroyed once, after its last hook.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(stream: *mut c_void) {
    // SAFETY: the caller's promise; the box was made in `on_http_filter_new`.
    drop(unsafe { Box::from_raw(stream.cast::<Stream>()) });
}

/// # Safety
/// `filter` is the stream Envoy calls about; `stream` what `on_http_filter_new` returned.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: *mut c_void,
    stream: *mut c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the stream is this filter's, and its config outlives it.
    let config = unsafe { &*(*stream.cast::<Stream>()).config };
    let mut request = EnvoyRequest(filter);
    match config {
        Config::Native(settings) => {
            // A panic must not unwind into Envoy: the request then goes on undecided, to ext_authz.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                filter::on_request_headers(settings, &mut request)
            }));
            CONTINUE
        }
        Config::Callout(settings) => {
            let next = catch_unwind(AssertUnwindSafe(|| {
                callout::on_request_headers(settings, &mut request, now())
            }));
            match next {
                Ok(Next::Continue) => CONTINUE,
                Ok(Next::Ask(asked)) => {
                    let headers: Vec<Header> = asked
                        .iter()
                        .map(|(k, v)| Header {
                            key: Buffer {
                                ptr: k.as_ptr(),
                                length: k.len(),
                            },
                            value: Buffer {
                                ptr: v.as_ptr(),
                                length: v.len(),
                            },
                        })
                        .collect();
                    let mut id = 0u64;
                    // SAFETY: every buffer lives until this call returns; Envoy copies them.
                    let started = unsafe {
                        envoy_dynamic_module_callback_http_filter_http_callout(
                            filter,
                            &mut id,
                            Buffer::of(&settings.cluster),
                            headers.as_ptr(),
                            headers.len(),
                            Buffer::NONE,
                            settings.timeout_ms,
                        )
                    };
                    if started != SUCCESS {
                        respond(filter, &callout::unavailable());
                    }
                    STOP_ALL
                }
                // Fail closed: a request the filter could not read is refused.
                Err(_) => {
                    respond(filter, &callout::unavailable());
                    STOP_ALL
                }
            }
        }
    }
}

/// Portcullis's answer to the callout.
///
/// # Safety
/// As for every hook; `headers` and `chunks` hold the given counts for the duration of the call.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter: *mut c_void,
    stream: *mut c_void,
    _callout_id: u64,
    result: u32,
    headers: *const Header,
    headers_size: usize,
    chunks: *const Buffer,
    chunks_size: usize,
) {
    // SAFETY: the caller's promise.
    let stream = unsafe { &mut *stream.cast::<Stream>() };
    // SAFETY: as above.
    let Config::Callout(settings) = (unsafe { &*stream.config }) else {
        return;
    };
    let answer = (result == SUCCESS).then(|| {
        // SAFETY: the caller's promise: `headers_size` headers, `chunks_size` chunks, or null.
        let (headers, chunks) = unsafe {
            (
                if headers.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(headers, headers_size)
                },
                if chunks.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(chunks, chunks_size)
                },
            )
        };
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                // SAFETY: Envoy's buffers, valid for this call.
                let (k, v) = unsafe { (h.key.bytes(), h.value.bytes()) };
                (
                    String::from_utf8_lossy(k).to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        // SAFETY: as above.
        let body: Vec<u8> = chunks
            .iter()
            .flat_map(|c| unsafe { c.bytes() }.to_vec())
            .collect();
        (headers, body)
    });
    let mut request = EnvoyRequest(filter);
    let (headers, body) = answer.unzip();
    let answered = catch_unwind(AssertUnwindSafe(|| {
        let answer = headers
            .as_deref()
            .zip(body)
            .map(|(headers, body)| callout::Answer { headers, body });
        callout::on_answer(settings, &mut request, answer, now())
    }))
    .unwrap_or_else(|_| callout::unavailable());
    match answered {
        Answered::Allow(set_cookies) => {
            stream.set_cookies = set_cookies;
            // SAFETY: the stream Envoy called about.
            unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(filter) };
        }
        respond_with => respond(filter, &respond_with),
    }
}

/// Sends portcullis's refusal (or the filter's own) to the client.
fn respond(filter: *mut c_void, answered: &Answered) {
    let Answered::Respond {
        status,
        headers,
        body,
    } = answered
    else {
        return;
    };
    let headers: Vec<Header> = headers.iter().map(|(k, v)| header(k, v)).collect();
    // SAFETY: every buffer lives until this call returns; Envoy copies them.
    unsafe {
        envoy_dynamic_module_callback_http_send_response(
            filter,
            *status,
            headers.as_ptr(),
            headers.len(),
            Buffer {
                ptr: body.as_ptr(),
                length: body.len(),
            },
            Buffer::of("portcullis"),
        );
    }
}

/// The `Set-Cookie`s of portcullis's allow go on the upstream's response.
///
/// # Safety
/// As for every hook.
#[unsafe(no_mangle)]
unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter: *mut c_void,
    stream: *mut c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the caller's promise.
    let stream = unsafe { &mut *stream.cast::<Stream>() };
    for cookie in std::mem::take(&mut stream.set_cookies) {
        // SAFETY: the stream Envoy called about; Envoy copies both buffers.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                filter,
                RESPONSE_HEADERS,
                Buffer::of("set-cookie"),
                Buffer::of(&cookie),
            );
        }
    }
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
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_trailers
);

ignored_hooks!(
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark
);
