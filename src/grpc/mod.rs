//! The gRPC adapter: `envoy.service.auth.v3.Authorization/Check` turned into one call of the core.
//! Nothing here decides anything; it converts, calls [`Authorizer::check`], records, converts back.

pub mod convert;

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::authz::{DenyReason, LiveAuthorizer};
use crate::config::EnvoyMetadata;
use crate::metrics::Metrics;
use crate::proto::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use crate::telemetry;

pub struct AuthorizationService {
    authorizer: LiveAuthorizer,
    metrics: Arc<Metrics>,
    metadata: EnvoyMetadata,
}

impl AuthorizationService {
    pub fn new(authorizer: LiveAuthorizer, metrics: Arc<Metrics>, metadata: EnvoyMetadata) -> Self {
        Self {
            authorizer,
            metrics,
            metadata,
        }
    }

    pub fn into_server(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        // Envoy's ext_authz span is the parent when Envoy traces (the trace headers come as gRPC
        // metadata).
        let span = telemetry::check_span();
        let metadata = request.metadata();
        telemetry::continue_trace(&span, |name| {
            Some(metadata.get(name)?.to_str().ok()?.to_owned())
        });
        // One authorizer for the whole check, whatever a reload does meanwhile.
        let authorizer = self.authorizer.load_full();
        let decision = match convert::authz_request(request.into_inner()) {
            // Not even wrapped when tracing is off.
            Some(req) if span.is_none() => authorizer.check(&req).await,
            Some(req) => authorizer.check(&req).instrument(span.clone()).await,
            None => authorizer.refuse(DenyReason::InvalidRequest),
        };
        decision.describe(&span);
        decision.record(&self.metrics, started.elapsed());
        Ok(Response::new(convert::check_response(
            decision,
            self.metadata,
        )))
    }
}
