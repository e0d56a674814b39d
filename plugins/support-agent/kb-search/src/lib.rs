//! A read-only knowledge-base search over a small built-in set of support articles:
//! the articles whose words best match the query, best first.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_sdk::{Descriptor, Effect, Failure, Tool};

#[derive(Deserialize)]
struct Query {
    query: String,
}

#[derive(Serialize)]
struct Article {
    title: &'static str,
    body: &'static str,
}

const ARTICLES: &[Article] = &[
    Article {
        title: "Refunds for damaged or lost orders",
        body: "Orders that arrive damaged, or never arrive, are refunded in full to the original payment method. \
               Refunds above 100 need a supervisor's approval.",
    },
    Article {
        title: "Changing your plan",
        body: "Plans can be changed at any time from the billing page; the difference is prorated.",
    },
    Article {
        title: "Late deliveries",
        body: "A delivery more than 7 days late may be refunded on request; otherwise offer tracking help.",
    },
    Article {
        title: "Password resets",
        body: "Send the customer the reset link from the account page; never ask for their password.",
    },
];

struct KbSearch;

impl Tool for KbSearch {
    type Input = Query;
    type Output = Vec<&'static Article>;

    fn describe() -> Descriptor {
        Descriptor::new("kb-search", "Searches the support knowledge base; returns the best matching articles.", Effect::ReadOnly)
            .schemas(
                json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}),
                json!({"type": "array", "items": {"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}}}}),
            )
    }

    fn call(q: Query) -> Result<Vec<&'static Article>, Failure> {
        let words: Vec<String> =
            q.query.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2).map(String::from).collect();
        if words.is_empty() {
            return Err(Failure::invalid_input("the query has no words to search for"));
        }
        let mut scored: Vec<(usize, &'static Article)> = ARTICLES
            .iter()
            .map(|a| {
                let text = format!("{} {}", a.title, a.body).to_lowercase();
                (words.iter().filter(|w| text.contains(w.as_str())).count(), a)
            })
            .filter(|(score, _)| *score > 0)
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(scored.into_iter().take(2).map(|(_, a)| a).collect())
    }
}

tether_sdk::export_tool!(KbSearch);
