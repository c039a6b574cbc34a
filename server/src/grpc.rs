//! The Open Inference Protocol over gRPC (tonic, `proto/grpc_predict_v2.proto`): health,
//! metadata, ModelInfer with typed or raw contents, and the model-repository extension.

use crate::grpc_tensors::{int_param, latency_parameters, output_tensors};
use crate::infer::{self, ApiError, ErrorKind, DATATYPE, INPUT};
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::*;
use crate::repo::State;
use crate::signal;
use crate::App;
use std::sync::Arc;
use tonic::{Request, Response, Status};

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e.kind {
            ErrorKind::BadRequest => Status::invalid_argument(e.message),
            ErrorKind::NotFound => Status::not_found(e.message),
            ErrorKind::Unavailable => Status::unavailable(e.message),
            ErrorKind::TooLarge => Status::resource_exhausted(e.message),
            ErrorKind::Internal => Status::internal(e.message),
            ErrorKind::Timeout => Status::deadline_exceeded(e.message),
        }
    }
}

pub struct Service {
    pub app: Arc<App>,
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.app.registry.any_ready() }))
    }

    async fn model_ready(&self, r: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let r = r.into_inner();
        let (_, state) = self.app.registry.state(&r.name, version(&r.version))?;
        Ok(Response::new(ModelReadyResponse { ready: matches!(state, State::Ready(_)) }))
    }

    async fn server_metadata(&self, _: Request<ServerMetadataRequest>) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: crate::SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(&self, r: Request<ModelMetadataRequest>) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self.app.registry.get(&r.name, version(&r.version))?;
        let info = m.info();
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: self.app.registry.versions(&r.name)?,
            platform: crate::PLATFORM.into(),
            inputs: vec![TensorMetadata {
                name: INPUT.into(),
                datatype: DATATYPE.into(),
                shape: vec![-1, info.window as i64, info.features as i64],
            }],
            outputs: signal::output_metadata(info)
                .into_iter()
                .map(|(name, datatype, shape)| TensorMetadata { name: name.into(), datatype: datatype.into(), shape })
                .collect(),
        }))
    }

    async fn model_infer(&self, r: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        crate::limits::note_model(r.extensions(), &r.get_ref().model_name);
        let mut req = r.into_inner();
        let model = self.app.registry.get(&req.model_name, version(&req.model_version))?;
        if req.inputs.len() != 1 {
            return Err(ApiError::bad("inputs", format!("{} tensors: the model takes exactly one, {INPUT:?}", req.inputs.len())).into());
        }
        if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
            return Err(ApiError::bad(
                "raw_input_contents",
                format!("{} entries for {} inputs", req.raw_input_contents.len(), req.inputs.len()),
            )
            .into());
        }
        let input = req.inputs.swap_remove(0);
        let shape = infer::check_input(&model, "inputs[0]", &input.name, &input.datatype, &input.shape)?;
        let n = shape[0] * shape[1] * shape[2];
        let raw = !req.raw_input_contents.is_empty();
        let x = if raw {
            if input.contents.is_some() {
                return Err(ApiError::bad("inputs[0].contents", "given together with raw_input_contents").into());
            }
            infer::f32_from_le(&req.raw_input_contents[0], n, "raw_input_contents[0]")?
        } else {
            let c = input.contents.ok_or_else(|| ApiError::bad("inputs[0].contents", "missing (and no raw_input_contents)"))?;
            c.fp32_contents
        };
        infer::check_outputs(&model, req.outputs.iter().map(|o| o.name.as_str()))?;
        let r = self.app.scheduler.run(model.clone(), x, shape, "inputs[0]".into()).await?;
        let mut all = signal::tensors(&model, r.probs, r.regression, r.std, r.batch);
        if !req.outputs.is_empty() {
            all.retain(|t| req.outputs.iter().any(|o| o.name == t.name));
        }
        let (outputs, raw_output_contents) = output_tensors(all, raw);
        Ok(Response::new(ModelInferResponse {
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            id: req.id,
            parameters: {
                let mut p = latency_parameters(r.queue_us, r.compute_us);
                p.insert("batch_windows".to_string(), int_param(r.batch_windows as i64));
                p
            },
            outputs,
            raw_output_contents,
        }))
    }

    type ModelStreamInferStream = crate::grpc_stream::ResponseStream;

    async fn model_stream_infer(
        &self,
        r: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        Ok(Response::new(crate::grpc_stream::run(self.app.clone(), r.into_inner())))
    }

    async fn repository_index(&self, r: Request<RepositoryIndexRequest>) -> Result<Response<RepositoryIndexResponse>, Status> {
        let models = self
            .app
            .registry
            .index(r.into_inner().ready)
            .into_iter()
            .map(|e| repository_index_response::ModelIndex { name: e.name, version: e.version, state: e.state, reason: e.reason })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(&self, r: Request<RepositoryModelLoadRequest>) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let name = r.into_inner().model_name;
        let reg = self.app.registry.clone();
        tokio::task::spawn_blocking(move || reg.load(&name)).await.map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.app.registry.unload(&r.into_inner().model_name)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
