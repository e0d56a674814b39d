//! An approver may edit a proposal before approving it; what they send replaces it as the
//! next step's or tool's input. It must keep the proposal's shape (every field the
//! proposal had, with the same JSON type, recursively), so a partial or mistyped edit is
//! refused when it is made, not found by the next step after the run went on.

use serde_json::Value;

/// Each way `edited` departs from the shape of `proposal`, as `JSON-POINTER: what`.
/// Fields the proposal lacks may be added; array items are checked against the
/// proposal's first item, when it has one.
pub(crate) fn check_edit(proposal: &Value, edited: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    compare(proposal, edited, &mut String::new(), &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Stops collecting after this many, so a huge edit cannot make a huge error.
const MOST_PROBLEMS: usize = 20;

fn compare(proposal: &Value, edited: &Value, at: &mut String, problems: &mut Vec<String>) {
    if problems.len() >= MOST_PROBLEMS {
        return;
    }
    let place = |at: &str| if at.is_empty() { "/".to_string() } else { at.to_string() };
    match (proposal, edited) {
        (Value::Object(was), Value::Object(now)) => {
            for (key, value) in was {
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                match now.get(key) {
                    Some(new) => compare(value, new, at, problems),
                    None => problems.push(format!("{}: missing (the proposal has it)", place(at))),
                }
                at.truncate(len);
            }
        }
        (Value::Array(was), Value::Array(now)) => {
            if let Some(first) = was.first() {
                for (i, item) in now.iter().enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    compare(first, item, at, problems);
                    at.truncate(len);
                }
            }
        }
        // A proposal's null says nothing about the type its edit may have.
        (Value::Null, _) => {}
        (was, now) if kind(was) != kind(now) => {
            problems.push(format!("{}: is {}, but the proposal has {} there", place(at), kind(now), kind(was)))
        }
        _ => {}
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check_edit;

    #[test]
    fn an_edit_of_the_same_shape_passes_and_may_add_fields() {
        let proposal = json!({"amount": 120, "currency": "EUR", "lines": [{"sku": "a", "qty": 1}]});
        let edited = json!({"amount": 80, "currency": "EUR", "note": "partial", "lines": [{"sku": "b", "qty": 2}]});
        assert_eq!(check_edit(&proposal, &edited), Ok(()));
        assert_eq!(check_edit(&json!(5), &json!(7.5)), Ok(()));
    }

    #[test]
    fn a_partial_or_mistyped_edit_names_each_field() {
        let proposal = json!({"amount": 120, "customer": {"id": "c1", "tier": "gold"}, "lines": [{"qty": 1}]});
        let edited = json!({"amount": "80", "customer": {"id": "c1"}, "lines": [{"qty": 1}, {"qty": "two"}]});
        let problems = check_edit(&proposal, &edited).unwrap_err();
        assert_eq!(
            problems,
            vec![
                "/amount: is a string, but the proposal has a number there",
                "/customer/tier: missing (the proposal has it)",
                "/lines/1/qty: is a string, but the proposal has a number there",
            ]
        );
        assert_eq!(
            check_edit(&json!({"a": 1}), &json!([1])).unwrap_err(),
            vec!["/: is an array, but the proposal has an object there"]
        );
    }

    #[test]
    fn keys_are_escaped_as_json_pointers_and_problems_are_capped() {
        let problems = check_edit(&json!({"a/b~c": 1}), &json!({})).unwrap_err();
        assert_eq!(problems, vec!["/a~1b~0c: missing (the proposal has it)"]);
        let proposal = json!({"x": [{"n": 1}]});
        let edited = json!({"x": (0..1000).map(|_| json!({"n": "s"})).collect::<Vec<_>>()});
        assert_eq!(check_edit(&proposal, &edited).unwrap_err().len(), 20);
    }
}
