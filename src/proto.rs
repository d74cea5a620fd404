//! The generated protobuf code, fenced in one module, and the few types the adapters use.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod envoy {
    pub mod config {
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }
    pub mod r#type {
        pub mod v3 {
            tonic::include_proto!("envoy.r#type.v3");
        }
    }
    pub mod service {
        pub mod auth {
            pub mod v3 {
                tonic::include_proto!("envoy.service.auth.v3");
            }
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub use envoy::config::core::v3::{HeaderMap, HeaderValue, HeaderValueOption, header_value_option};
pub use envoy::service::auth::v3::authorization_client::AuthorizationClient;
pub use envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
pub use envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    attribute_context, check_response,
};
pub use envoy::r#type::v3::HttpStatus;
pub use google::rpc::Status as RpcStatus;

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn field_numbers_match_envoy_on_the_wire() {
        // CheckRequest.attributes(1) -> AttributeContext.request(4) -> Request.http(2) -> path(4).
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        path: "/x".into(),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
        };
        assert_eq!(
            req.encode_to_vec(),
            [0x0a, 0x08, 0x22, 0x06, 0x12, 0x04, 0x22, 0x02, b'/', b'x']
        );
        // CheckResponse.ok_response(3) -> OkHttpResponse.headers_to_remove(5).
        let resp = CheckResponse {
            http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                headers_to_remove: vec!["a".into()],
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(resp.encode_to_vec(), [0x1a, 0x03, 0x2a, 0x01, b'a']);
        // response_headers_to_add is field 6: tag (6 << 3 | 2) = 0x32.
        let ok = OkHttpResponse {
            response_headers_to_add: vec![HeaderValueOption::default()],
            ..Default::default()
        };
        assert_eq!(ok.encode_to_vec(), [0x32, 0x00]);
    }
}
