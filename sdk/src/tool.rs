use serde::{de::DeserializeOwned, Serialize};

use crate::bindings::tether::plugin::types as wit;
use crate::failure::{decode, encode};
use crate::Failure;

/// What a tool call does to the world; drives how carefully the host governs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Only reads.
    ReadOnly,
    /// Repeating a call with the same input has no further effect.
    Idempotent,
    /// An external side effect that must happen at most once.
    External,
}

/// How a tool describes itself. Schemas default to `{}` (any JSON).
#[derive(Clone, Debug)]
pub struct Descriptor {
    /// The tool's name.
    pub name: String,
    /// What the tool does, in a sentence or two.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
    /// What a call does to the world.
    pub effect: Effect,
}

impl Descriptor {
    /// A descriptor with permissive schemas; set them with [`Descriptor::schemas`].
    pub fn new(name: impl Into<String>, description: impl Into<String>, effect: Effect) -> Self {
        Descriptor {
            name: name.into(),
            description: description.into(),
            input_schema: serde_json::json!({}),
            output_schema: serde_json::json!({}),
            effect,
        }
    }

    /// Sets the input and output JSON Schemas.
    pub fn schemas(mut self, input: serde_json::Value, output: serde_json::Value) -> Self {
        self.input_schema = input;
        self.output_schema = output;
        self
    }
}

/// A tool. Implement it on a unit struct and export it with [`export_tool!`](crate::export_tool).
pub trait Tool {
    /// The call's input, decoded from JSON. A mismatch returns `invalid-input` to the caller.
    type Input: DeserializeOwned;
    /// The call's output, encoded to JSON.
    type Output: Serialize;

    /// Describes the tool. Must not depend on any input.
    fn describe() -> Descriptor;

    /// Performs one call.
    fn call(input: Self::Input) -> Result<Self::Output, Failure>;
}

#[doc(hidden)]
pub fn __describe<T: Tool>() -> wit::Descriptor {
    let d = T::describe();
    wit::Descriptor {
        name: d.name,
        description: d.description,
        input_schema: d.input_schema.to_string(),
        output_schema: d.output_schema.to_string(),
        effect: match d.effect {
            Effect::ReadOnly => wit::Effect::ReadOnly,
            Effect::Idempotent => wit::Effect::Idempotent,
            Effect::External => wit::Effect::External,
        },
    }
}

#[doc(hidden)]
pub fn __call<T: Tool>(input: String) -> Result<String, wit::Failure> {
    let call = || -> Result<String, Failure> {
        let input = decode::<T::Input>("the tool input", &input)?;
        let output = T::call(input)?;
        encode("the tool output", &output)
    };
    call().map_err(Into::into)
}

/// Exports a type implementing [`Tool`] as this component's tool.
#[macro_export]
macro_rules! export_tool {
    ($ty:ty) => {
        const _: () = {
            struct __TetherTool;
            impl $crate::bindings::exports::tether::plugin::tool::Guest for __TetherTool {
                fn describe() -> $crate::bindings::tether::plugin::types::Descriptor {
                    $crate::__describe_tool::<$ty>()
                }
                fn call(input: ::std::string::String)
                    -> ::std::result::Result<::std::string::String, $crate::bindings::tether::plugin::types::Failure> {
                    $crate::__call_tool::<$ty>(input)
                }
            }
            $crate::bindings::export_tool_bindings!(__TetherTool with_types_in $crate::bindings);
        };
    };
}
