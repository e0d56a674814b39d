use serde::{de::DeserializeOwned, Serialize};

use crate::bindings::tether::plugin::host;
use crate::failure::{decode, encode};
use crate::Failure;

/// A workflow step. Implement it on a unit struct and export it with [`export_step!`](crate::export_step).
pub trait Step {
    /// The step's input, decoded from the JSON the host passes in. A mismatch fails the
    /// step with kind `invalid-input` before `run` is called.
    type Input: DeserializeOwned;
    /// The step's output, encoded to JSON for the host.
    type Output: Serialize;

    /// Runs the step once. Returning `Err` fails the step with class `guest_error`
    /// (or `denied`, for a failure of kind `Denied`).
    fn run(input: Self::Input) -> Result<Self::Output, Failure>;
}

/// Calls the tool `name` with a typed input and decodes its typed output.
///
/// The step must be granted the tool in the workflow; otherwise this returns a failure of
/// kind `Denied`, which the step may handle or return with `?`.
pub fn call_tool<I: Serialize, O: DeserializeOwned>(name: &str, input: &I) -> Result<O, Failure> {
    let input = encode("the tool input", input)?;
    let output = call_tool_raw(name, &input)?;
    decode(&format!("the output of tool `{name}`"), &output)
        .map_err(|f| Failure::internal(f.message))
}

/// What the tool `name` says of itself (its `describe()`): name, description, input and
/// output JSON Schemas, effect. Fails `Denied` if the step was not granted the tool.
pub fn describe_tool(name: &str) -> Result<crate::bindings::tether::plugin::types::Descriptor, Failure> {
    host::describe_tool(name).map_err(Failure::from)
}

/// Calls the tool `name` with JSON text and returns its JSON text output.
pub fn call_tool_raw(name: &str, input: &str) -> Result<String, Failure> {
    host::call_tool(name, input).map_err(Failure::from)
}

#[doc(hidden)]
pub fn __run<S: Step>(input: String) -> Result<String, crate::bindings::tether::plugin::types::Failure> {
    let run = || -> Result<String, Failure> {
        let input = decode::<S::Input>("the step input", &input)?;
        let output = S::run(input)?;
        encode("the step output", &output)
    };
    run().map_err(Into::into)
}

/// Exports a type implementing [`Step`] as this component's step.
#[macro_export]
macro_rules! export_step {
    ($ty:ty) => {
        const _: () = {
            struct __TetherStep;
            impl $crate::bindings::exports::tether::plugin::step::Guest for __TetherStep {
                fn run(input: ::std::string::String)
                    -> ::std::result::Result<::std::string::String, $crate::bindings::tether::plugin::types::Failure> {
                    $crate::__run_step::<$ty>(input)
                }
            }
            $crate::bindings::export_step_bindings!(__TetherStep with_types_in $crate::bindings);
        };
    };
}
