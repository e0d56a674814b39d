//! The operator's model, from a step that asks for it (`model = true` in the workflow).
//!
//! The host sends the request to the OpenAI-compatible endpoint the policy's `[model]`
//! configures, journals the answer (so a resumed or replayed run never asks again), and
//! charges the tokens the provider counted to the run's `tokens` budget itself. See
//! [`crate::agent`] for the loop that lets a model call the step's tools.
//!
//! ```ignore
//! use tether_sdk::model::{complete, ChatRequest, Message};
//! let answer = complete(&ChatRequest::new(vec![
//!     Message::system("You classify support tickets."),
//!     Message::user("My parcel never arrived."),
//! ]))?;
//! tether_sdk::info(&answer.message.content);
//! ```

pub use crate::bindings::tether::plugin::model::{ChatAnswer, ChatRequest, Message, ToolCall, ToolSpec, Usage};
use crate::Failure;

/// Asks the model. Fails `denied` if the step may not use it (or the model it names),
/// `transient` if the provider could not be reached or failed.
pub fn complete(request: &ChatRequest) -> Result<ChatAnswer, Failure> {
    crate::bindings::tether::plugin::model::complete(request).map_err(Failure::from)
}

impl ChatRequest {
    /// A request with the operator's default model and no tools.
    pub fn new(messages: Vec<Message>) -> ChatRequest {
        ChatRequest { model: None, messages, tools: Vec::new(), max_tokens: None, temperature: None }
    }
}

impl Message {
    fn of(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    /// A system message.
    pub fn system(content: &str) -> Message {
        Message::of("system", content)
    }

    /// A user message.
    pub fn user(content: &str) -> Message {
        Message::of("user", content)
    }

    /// The answer to tool call `id`.
    pub fn tool(id: &str, content: &str) -> Message {
        Message { tool_call_id: Some(id.into()), ..Message::of("tool", content) }
    }
}
