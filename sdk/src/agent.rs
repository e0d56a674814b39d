//! The agent loop: a model that calls the step's tools until it answers.
//!
//! The model is given the step's granted tools (each tool's own `describe()` becomes its
//! entry in the model's tool list); each call it asks for goes through `call-tool`, so the
//! tool's grant, the policy's rules, approval gates and the step's budgets apply to it as
//! to any call; its result (or failure) goes back to the model; the loop ends when the
//! model answers without asking for a tool, or after `max_turns`. Every model turn and
//! tool call is journaled, so a resumed run continues where it stopped and a replay is
//! exact.
//!
//! ```ignore
//! let answer = tether_sdk::agent::Agent::new("You triage support mail.")
//!     .tools(&["customer-lookup", "kb-search", "refund"])
//!     .run(&ticket.message)?;
//! ```

use crate::model::{complete, ChatRequest, Message, ToolSpec};
use crate::Failure;

/// An agent: a system prompt, the tools it may use, and a bound on its turns.
#[derive(Clone, Debug)]
pub struct Agent {
    system: String,
    tools: Vec<String>,
    max_turns: u32,
    model: Option<String>,
}

/// What the agent ended with.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The model's final answer.
    pub answer: String,
    /// The tools it called, in order, with whether each succeeded.
    pub calls: Vec<(String, bool)>,
    /// Model turns taken.
    pub turns: u32,
}

impl Agent {
    /// An agent with this system prompt, no tools, and at most 8 turns.
    pub fn new(system: &str) -> Agent {
        Agent { system: system.into(), tools: Vec::new(), max_turns: 8, model: None }
    }

    /// The tools the model may ask for (each must be granted to the step).
    pub fn tools(mut self, tools: &[&str]) -> Agent {
        self.tools = tools.iter().map(|t| t.to_string()).collect();
        self
    }

    /// At most this many model turns; past them the loop fails `transient`.
    pub fn max_turns(mut self, turns: u32) -> Agent {
        self.max_turns = turns;
        self
    }

    /// A model other than the operator's default.
    pub fn model(mut self, model: &str) -> Agent {
        self.model = Some(model.into());
        self
    }

    /// Runs the loop on the user's message.
    pub fn run(&self, user: &str) -> Result<Outcome, Failure> {
        let mut specs = Vec::new();
        for name in &self.tools {
            let d = crate::describe_tool(name)?;
            specs.push(ToolSpec { name: d.name, description: d.description, parameters: d.input_schema });
        }
        let mut messages = vec![Message::system(&self.system), Message::user(user)];
        let mut calls = Vec::new();
        for turn in 1..=self.max_turns {
            let request = ChatRequest {
                model: self.model.clone(),
                messages: messages.clone(),
                tools: specs.clone(),
                max_tokens: None,
                temperature: None,
            };
            let answer = complete(&request)?;
            let asked = answer.message.tool_calls.clone();
            messages.push(answer.message.clone());
            if asked.is_empty() {
                return Ok(Outcome { answer: answer.message.content, calls, turns: turn });
            }
            for call in asked {
                // The model may only use the tools it was given.
                let result = if self.tools.contains(&call.name) {
                    crate::call_tool_raw(&call.name, &call.arguments)
                } else {
                    Err(Failure::denied(format!("`{}` is not one of the tools offered", call.name)))
                };
                calls.push((call.name.clone(), result.is_ok()));
                let content = match result {
                    Ok(output) => output,
                    Err(f) => format!("{{\"error\": {:?}, \"kind\": {:?}}}", f.message, format!("{:?}", f.kind)),
                };
                messages.push(Message::tool(&call.id, &content));
            }
        }
        Err(Failure::transient(format!("the model did not answer within {} turns", self.max_turns)))
    }
}
