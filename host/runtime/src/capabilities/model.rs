//! `model.complete`: a step asks the operator's model (the policy's `[model]`). In order:
//!
//! 1. the grant: the step asked for the model, its identity was granted it, the model it
//!    names is allowed;
//! 2. the request in the provider's wire form (async-openai's chat types), with
//!    `max_tokens` lowered to what the run's `tokens` budget has left;
//! 3. served from the journal when it holds the call (the request must be the recorded
//!    one), otherwise sent through the host's connector after the run so far is durable,
//!    and journaled durably as one `model_called` event before the step sees the answer;
//! 4. the tokens the provider reported, and their price, charged to the step and the run
//!    by the host (the step's own reports cannot lower them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent,
    ChatCompletionTool, ChatCompletionTools, CreateChatCompletionRequest, CreateChatCompletionResponse, FunctionCall,
    FunctionObject,
};
use bytes::Bytes;
use ipnet::IpNet;
use serde_json::Value;
use tether_types::egress::{Scheme, Target};
use tether_types::event::EventKind;
use tether_types::model::{ModelConfig, ModelError, ModelOutcome};
use tether_types::FailureClass;
use wasmtime::component::LinkerInstance;
use wasmtime::StoreContextMut;

use crate::capabilities::checkpoint::checkpoint;
use crate::capabilities::egress::{self, Exchange};
use crate::capabilities::grants::ToolCallView;
use crate::capabilities::served::{record_durably, serve, sync_before_effect};
use crate::govern::governance::Pass;
use crate::sandbox::bindings::step::tether::plugin::model::{ChatAnswer, ChatRequest, Message, ToolCall, Usage};
use crate::sandbox::bindings::{Failure, FailureKind};
use crate::sandbox::classify::wit_kind;
use tether_types::event::ToolResult;
use tether_types::policy::Checkpoint;

/// Largest answer read from the provider.
const ANSWER_CAP: usize = 4 << 20;

/// Largest request sent to the provider (its JSON): it is journaled whole.
const REQUEST_CAP: usize = 2 << 20;

/// Bytes of JSON per token, for an estimate where the provider reports none.
const BYTES_PER_TOKEN: usize = 4;

/// Adds `complete` to the step's `model` interface.
pub(crate) fn add_to_linker<T: ToolCallView>(model: &mut LinkerInstance<'_, T>) -> wasmtime::Result<()> {
    model.func_wrap_async("complete", |cx: StoreContextMut<'_, T>, (request,): (ChatRequest,)| {
        Box::new(complete(cx, request))
    })
}

async fn complete<T: ToolCallView>(
    mut cx: StoreContextMut<'_, T>,
    asked: ChatRequest,
) -> wasmtime::Result<(Result<ChatAnswer, Failure>,)> {
    let grants = cx.data().grants();
    let step = grants.step_name.clone();
    let max_calls = grants.max_model_calls;
    let call = cx.data().sandbox_ref().record.model_calls;
    if call >= max_calls {
        let msg =
            format!("step `{step}` asked the model more than {max_calls} times; its model_calls budget is {max_calls}");
        return Err(cx.data_mut().sandbox().trip(FailureClass::ModelBudgetExceeded, msg));
    }
    cx.data_mut().sandbox().record.model_calls += 1;
    let config = match &cx.data().grants().model {
        Ok(config) => Arc::clone(config),
        Err(why) => return Ok((Err(failure(FailureKind::Denied, why.clone())),)),
    };
    let model = match config.model_for(asked.model.as_deref()) {
        Ok(m) => m,
        Err(why) => return Ok((Err(failure(FailureKind::Denied, why)),)),
    };
    // The policy's rules at `model_call`: allow, deny, or wait for a person (the request
    // is sent as the step made it; an approver's edit does not change it).
    let vars = model_vars(cx.data(), &model, &asked);
    let proposal = serde_json::json!({
        "model": model,
        "messages": asked.messages.len(),
        "tools": asked.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
    });
    match checkpoint(&mut cx, (&step, call), Checkpoint::ModelCall, &vars, proposal).await? {
        Pass::Refuse(ToolResult::Err { kind, message, .. }) => return Ok((Err(failure(wit_kind(kind), message)),)),
        Pass::Go(Some(_)) => {
            let msg = "approved with an edit; a model call is made only as the step asked it, so an edited \
                       approval refuses it (approve it unedited, or reject it)";
            return Ok((Err(failure(FailureKind::Denied, msg.into())),));
        }
        Pass::Go(None) | Pass::Refuse(ToolResult::Ok(_)) => {}
    }
    let tokens_left = tokens_left(cx.data_mut());
    if tokens_left == Some(0) {
        let msg = "asked the model with no `tokens` left in the run's budget".to_string();
        return Err(cx.data_mut().sandbox().trip(FailureClass::RunBudgetExceeded, msg));
    }
    let request = wire_request(&asked, &model, tokens_left);
    let request_json = match serde_json::to_value(&request) {
        Ok(v) => v,
        Err(e) => return Ok((Err(failure(FailureKind::InvalidInput, format!("the request cannot be written: {e}"))),)),
    };
    let request_bytes = request_json.to_string().len();
    if request_bytes > REQUEST_CAP {
        let msg = format!("the request is {request_bytes} bytes; a model call takes at most {REQUEST_CAP}");
        return Ok((Err(failure(FailureKind::InvalidInput, msg)),));
    }
    // The prompt alone must fit what the run's budget has left.
    if tokens_left.is_some_and(|left| request_bytes / BYTES_PER_TOKEN >= left as usize) {
        let msg = format!(
            "a prompt of about {} tokens does not fit the {} the run's `tokens` budget has left",
            request_bytes / BYTES_PER_TOKEN,
            tokens_left.unwrap_or(0)
        );
        return Err(cx.data_mut().sandbox().trip(FailureClass::RunBudgetExceeded, msg));
    }
    let actual = |outcome: ModelOutcome| EventKind::ModelCalled {
        step: step.clone(),
        call,
        request: request_json.clone(),
        outcome,
        usage: BTreeMap::new(),
        wall_us: 0,
    };
    let pending = || actual(ModelOutcome::Failed { error: ModelError::Unavailable, message: String::new() });
    let wanted = |k: &EventKind| matches!(k, EventKind::ModelCalled { step: s, call: c, request: r, .. } if *s == step && *c == call && *r == request_json);
    let event = match serve(cx.data_mut(), wanted, pending)? {
        Some(recorded) => recorded,
        None => {
            sync_before_effect(cx.data_mut()).await?;
            let deadline = tokio::time::Instant::from_std(cx.data().grants().deadline);
            let started = Instant::now();
            let outcome = send(&config, &request_json, deadline).await;
            let usage = charge(&config, &model, &outcome, request_bytes);
            let event = EventKind::ModelCalled {
                step: step.clone(),
                call,
                request: request_json.clone(),
                outcome,
                usage,
                wall_us: started.elapsed().as_micros() as u64,
            };
            record_durably(cx.data_mut(), &event).await?;
            event
        }
    };
    let EventKind::ModelCalled { outcome, usage, .. } = event else {
        let msg = "the journal holds no model call here".to_string();
        return Err(cx.data_mut().sandbox().trip(FailureClass::HostFault, msg));
    };
    // Charged by the host, from the provider's own count.
    let sandbox = cx.data_mut().sandbox();
    for (metric, amount) in &usage {
        if let Err(msg) = sandbox.record.charge_usage(metric, *amount) {
            return Err(sandbox.trip(FailureClass::HostFault, msg));
        }
    }
    sandbox.check_usage_limits()?;
    Ok((answer_for_guest(outcome),))
}

/// The variables a `model_call` rule sees (none without a policy).
fn model_vars<T: ToolCallView>(state: &T, model: &str, asked: &ChatRequest) -> serde_json::Map<String, Value> {
    let grants = state.grants();
    let Some(gov) = &grants.governance else { return serde_json::Map::new() };
    let step = tether_types::flow::step_of(&grants.step_name).to_string();
    let tools: Vec<Value> = asked.tools.iter().map(|t| Value::String(t.name.clone())).collect();
    tether_types::policy::vars(&[
        ("identity", Value::String(gov.identity.clone())),
        ("step", Value::String(step)),
        ("model", Value::String(model.to_string())),
        ("tools", Value::Array(tools)),
        ("run", serde_json::json!({"workflow": gov.workflow, "input": gov.run_input})),
    ])
}

/// What the run's `tokens` budget has left for this attempt, if it has one.
fn tokens_left<T: ToolCallView>(state: &mut T) -> Option<u32> {
    let sandbox = state.sandbox_ref();
    let limit = sandbox.usage_limits.get("tokens")?;
    let used = sandbox.record.usage.get("tokens").copied().unwrap_or(0.0);
    Some((limit - used).clamp(0.0, f64::from(u32::MAX)) as u32)
}

/// The request in the provider's wire form.
fn wire_request(asked: &ChatRequest, model: &str, tokens_left: Option<u32>) -> CreateChatCompletionRequest {
    let messages = asked.messages.iter().map(wire_message).collect();
    let tools: Vec<ChatCompletionTools> = asked
        .tools
        .iter()
        .map(|t| {
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObject {
                    name: t.name.clone(),
                    description: Some(t.description.clone()),
                    parameters: serde_json::from_str(&t.parameters).ok(),
                    strict: None,
                },
            })
        })
        .collect();
    let max_tokens = match (asked.max_tokens, tokens_left) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    };
    CreateChatCompletionRequest {
        model: model.to_string(),
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        max_completion_tokens: max_tokens,
        temperature: asked.temperature,
        ..Default::default()
    }
}

fn wire_message(m: &Message) -> ChatCompletionRequestMessage {
    match m.role.as_str() {
        "system" => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: ChatCompletionRequestSystemMessageContent::Text(m.content.clone()),
            name: None,
        }),
        "assistant" => {
            let calls: Vec<ChatCompletionMessageToolCalls> = m
                .tool_calls
                .iter()
                .map(|c| {
                    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                        id: c.id.clone(),
                        function: FunctionCall { name: c.name.clone(), arguments: c.arguments.clone() },
                    })
                })
                .collect();
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: (!m.content.is_empty())
                    .then(|| ChatCompletionRequestAssistantMessageContent::Text(m.content.clone())),
                tool_calls: (!calls.is_empty()).then_some(calls),
                ..Default::default()
            })
        }
        "tool" => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
            content: ChatCompletionRequestToolMessageContent::Text(m.content.clone()),
            tool_call_id: m.tool_call_id.clone().unwrap_or_default(),
        }),
        _ => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(m.content.clone()),
            name: None,
        }),
    }
}

/// Sends the request to `{url}/chat/completions` with the key (read now), before
/// `deadline`. The operator configured the endpoint, so any address it resolves to is
/// allowed (a model served on the same machine or network is common).
async fn send(config: &ModelConfig, request: &Value, deadline: tokio::time::Instant) -> ModelOutcome {
    let failed = |error, message: String| ModelOutcome::Failed { error, message };
    let base = match (&config.url, &config.url_env) {
        (Some(url), _) => url.clone(),
        (None, Some(var)) => match std::env::var(var) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                return failed(
                    ModelError::Unavailable,
                    format!("`{var}` (the model's URL) is not set in tether's environment"),
                )
            }
        },
        (None, None) => return failed(ModelError::Unavailable, "no model URL is configured".into()),
    };
    let url = match tether_types::model::base_url(&base) {
        Ok(b) => format!("{b}/chat/completions"),
        Err(e) => return failed(ModelError::Unavailable, e),
    };
    let Some((target, path)) = split(&url) else {
        return failed(ModelError::Unavailable, format!("`{url}` is not a URL the host can send to"));
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if let Some(var) = &config.key {
        let key = match std::env::var(var) {
            Ok(k) if !k.is_empty() => k,
            _ => {
                return failed(
                    ModelError::Unavailable,
                    format!("`{var}` (the model's key) is not set in tether's environment"),
                )
            }
        };
        match http::HeaderValue::from_str(&format!("Bearer {key}")) {
            Ok(mut v) => {
                v.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, v);
            }
            Err(_) => return failed(ModelError::Unavailable, format!("`{var}` does not hold a valid key")),
        }
    }
    let exchange = Exchange {
        method: http::Method::POST,
        target,
        path_and_query: path,
        headers,
        body: Bytes::from(request.to_string()),
    };
    let anywhere: [IpNet; 2] = ["0.0.0.0/0".parse().expect("a CIDR"), "::/0".parse().expect("a CIDR")];
    let answer = match egress::send(&exchange, &anywhere, deadline, ANSWER_CAP).await {
        Ok(a) => a,
        Err(e) => return failed(ModelError::Unavailable, format!("the model could not be reached: {e}")),
    };
    let text = String::from_utf8_lossy(&answer.body);
    if !(200..300).contains(&answer.status) {
        let start: String = text.chars().take(300).collect();
        return failed(ModelError::Unavailable, format!("the model answered {}: {start}", answer.status));
    }
    match serde_json::from_slice::<CreateChatCompletionResponse>(&answer.body) {
        Ok(parsed) if !parsed.choices.is_empty() => match serde_json::from_slice::<Value>(&answer.body) {
            Ok(answer) => ModelOutcome::Answer { answer },
            Err(e) => failed(ModelError::BadAnswer, e.to_string()),
        },
        Ok(_) => failed(ModelError::BadAnswer, "the model's answer has no choices".into()),
        Err(e) => failed(ModelError::BadAnswer, format!("the model's answer is not a chat completion: {e}")),
    }
}

/// `scheme://host[:port]/path` apart.
fn split(url: &str) -> Option<(Target, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = match uri.scheme_str()? {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return None,
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(scheme.default_port());
    let path = uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
    Some((Target { scheme, host, port }, path))
}

/// The usage to charge for an outcome: the provider's token count, and its price. A
/// provider that reports none is charged an estimate from the sizes of the request and
/// the answer (a budget must not be open to a server that does not count).
fn charge(config: &ModelConfig, model: &str, outcome: &ModelOutcome, request_bytes: usize) -> BTreeMap<String, f64> {
    let mut usage = BTreeMap::new();
    let ModelOutcome::Answer { answer } = outcome else { return usage };
    let Ok(parsed) = serde_json::from_value::<CreateChatCompletionResponse>(answer.clone()) else { return usage };
    let (prompt, completion) = match parsed.usage {
        Some(u) => (u64::from(u.prompt_tokens), u64::from(u.completion_tokens)),
        None => {
            let answer_bytes = answer.to_string().len();
            ((request_bytes / BYTES_PER_TOKEN) as u64, (answer_bytes / BYTES_PER_TOKEN) as u64)
        }
    };
    let u = async_openai::types::chat::CompletionUsage {
        prompt_tokens: prompt.min(u64::from(u32::MAX)) as u32,
        completion_tokens: completion.min(u64::from(u32::MAX)) as u32,
        total_tokens: (prompt + completion).min(u64::from(u32::MAX)) as u32,
        ..Default::default()
    };
    let total = u64::from(u.total_tokens).max(prompt + completion);
    usage.insert("tokens".to_string(), total as f64);
    if let Some(cost) = config.cost(model, prompt, completion) {
        usage.insert("cost_usd".to_string(), cost);
    }
    usage
}

/// The outcome as the guest receives it.
fn answer_for_guest(outcome: ModelOutcome) -> Result<ChatAnswer, Failure> {
    let answer = match outcome {
        ModelOutcome::Answer { answer } => answer,
        ModelOutcome::Failed { error, message } => {
            let kind = match error {
                ModelError::Denied => FailureKind::Denied,
                ModelError::InvalidRequest => FailureKind::InvalidInput,
                ModelError::Unavailable | ModelError::BadAnswer => FailureKind::Transient,
            };
            return Err(failure(kind, message));
        }
    };
    let parsed: CreateChatCompletionResponse = serde_json::from_value(answer)
        .map_err(|e| failure(FailureKind::Internal, format!("the recorded answer cannot be read: {e}")))?;
    let Some(choice) = parsed.choices.into_iter().next() else {
        return Err(failure(FailureKind::Transient, "the model's answer has no choices".into()));
    };
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| match c {
            ChatCompletionMessageToolCalls::Function(f) => {
                Some(ToolCall { id: f.id, name: f.function.name, arguments: f.function.arguments })
            }
            ChatCompletionMessageToolCalls::Custom(_) => None,
        })
        .collect();
    let finish_reason = choice
        .finish_reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let usage = parsed.usage.unwrap_or_default();
    Ok(ChatAnswer {
        message: Message {
            role: "assistant".into(),
            content: choice.message.content.unwrap_or_default(),
            tool_calls,
            tool_call_id: None,
        },
        finish_reason,
        model: parsed.model,
        usage: Usage { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens },
    })
}

fn failure(kind: FailureKind, message: String) -> Failure {
    Failure { kind, message }
}
