//! The `tracing` integration (feature `tracing`): [`ContextLayer`] makes the
//! innermost entered span the allocation context (see [`crate::context`]).
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry().with(leaktrace::tracing::ContextLayer::default()).init();
//! ```
//!
//! A span's context is its name and, by default, the values of its fields
//! named `route`, `http.route`, `matched_path`, `method`, `http.method` and
//! `otel.name`: a tower-http `TraceLayer` span that records the matched
//! route becomes `POST /{key}`, a `#[tracing::instrument]` function's span
//! becomes the function's name. Fields with unbounded values (a raw URI, a
//! request id) are never used unless named with [`ContextLayer::fields`],
//! and the number of distinct contexts is capped (see
//! [`crate::context::set_limit`]).
//!
//! ## Filters
//!
//! A layer sees only the spans that the subscriber enables. A global filter
//! (`EnvFilter` set to `warn` on the registry, or `RUST_LOG=warn` read by
//! `fmt().init()`) disables `info` spans before any layer sees them, and the
//! contexts are gone with them. Keep the spans for leaktrace and filter the
//! log output alone, with a per-layer filter:
//!
//! ```
//! use tracing_subscriber::{prelude::*, EnvFilter};
//!
//! tracing_subscriber::registry()
//!     .with(leaktrace::tracing::ContextLayer::default()) // sees every span
//!     .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::new("warn"))) // logs at warn
//!     .init();
//! ```
//!
//! (With `EnvFilter` on the registry instead, `.with(EnvFilter::new("warn"))`
//! before the layers, leaktrace would see no `info` span at all.)

#![forbid(unsafe_code)]

use crate::context::{self, ContextId};
use std::cell::RefCell;
use std::fmt::Write as _;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Field names whose values name a context by default.
pub const DEFAULT_FIELDS: &[&str] = &["otel.name", "method", "http.method", "route", "http.route", "matched_path"];

/// A `tracing_subscriber::Layer` that makes the innermost entered span the
/// allocation context while it is entered.
#[derive(Clone, Debug)]
pub struct ContextLayer {
    fields: Vec<String>,
}

impl Default for ContextLayer {
    fn default() -> Self {
        ContextLayer { fields: DEFAULT_FIELDS.iter().map(|f| f.to_string()).collect() }
    }
}

impl ContextLayer {
    /// Names the fields whose values make up a span's context, replacing the
    /// defaults ([`DEFAULT_FIELDS`]). Their values are joined in this order;
    /// a span with none of them is named by its span name. Only name fields
    /// with few distinct values: each distinct label is a context.
    pub fn fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = names.into_iter().map(Into::into).collect();
        self
    }

    fn label(&self, name: &str, values: &[(usize, String)]) -> String {
        if let Some((_, v)) = values.iter().find(|(i, _)| self.fields[*i] == "otel.name") {
            return v.clone();
        }
        if values.is_empty() {
            return name.to_string();
        }
        let mut sorted: Vec<&(usize, String)> = values.iter().collect();
        sorted.sort_by_key(|(i, _)| *i);
        let mut out = String::new();
        for (_, v) in sorted {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(v);
        }
        out
    }
}

/// What the layer keeps in a span's extensions.
struct SpanContext {
    id: ContextId,
    /// The chosen field values, by their index in `ContextLayer::fields`.
    values: Vec<(usize, String)>,
}

/// Collects the chosen fields' values.
struct Collect<'a> {
    fields: &'a [String],
    values: &'a mut Vec<(usize, String)>,
}

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: String) {
        if let Some(i) = self.fields.iter().position(|f| f == field.name()) {
            match self.values.iter_mut().find(|(j, _)| *j == i) {
                Some(slot) => slot.1 = value,
                None => self.values.push((i, value)),
            }
        }
    }
}

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.fields.iter().any(|f| f == field.name()) {
            let mut s = String::new();
            let _ = write!(s, "{value:?}");
            // A `&str` recorded with `?` prints quoted.
            let s = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).map(str::to_owned).unwrap_or(s);
            self.put(field, s);
        }
    }
}

thread_local! {
    /// Per thread: the spans entered, innermost last, each with the
    /// context that was current before it.
    static ENTERED: RefCell<Vec<(Id, u32)>> = const { RefCell::new(Vec::new()) };
}

impl<S> Layer<S> for ContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let _ignore = crate::hot::control::ignore();
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut values = Vec::new();
        attrs.record(&mut Collect { fields: &self.fields, values: &mut values });
        let cid = ContextId::new(&self.label(attrs.metadata().name(), &values));
        // `replace`, not `insert`: a second ContextLayer on the same
        // registry must not panic.
        span.extensions_mut().replace(SpanContext { id: cid, values });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let _ignore = crate::hot::control::ignore();
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        let Some(sc) = ext.get_mut::<SpanContext>() else {
            return;
        };
        let before = sc.values.len();
        let old = sc.values.clone();
        values.record(&mut Collect { fields: &self.fields, values: &mut sc.values });
        if sc.values.len() != before || sc.values != old {
            // A field recorded later (tower-http's `matched_path` once
            // routing ran) renames the span's context from then on.
            sc.id = ContextId::new(&self.label(span.metadata().name(), &sc.values));
            let now = sc.id;
            drop(ext);
            // When the span is entered right now, the thread switches too.
            let innermost = ENTERED.try_with(|e| e.borrow().last().map(|(i, _)| i == id)).ok().flatten();
            if innermost == Some(true) {
                context::swap(context_raw(now));
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let _ignore = crate::hot::control::ignore();
        let Some(span) = ctx.span(id) else {
            return;
        };
        let Some(cid) = span.extensions().get::<SpanContext>().map(|s| s.id) else {
            return;
        };
        let prev = context::swap(context_raw(cid));
        let _ = ENTERED.try_with(|e| e.borrow_mut().push((id.clone(), prev)));
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let _ignore = crate::hot::control::ignore();
        let _ = ENTERED.try_with(|e| {
            let mut e = e.borrow_mut();
            // Spans exit innermost first; one that exits out of order
            // hands its saved context to the span entered after it.
            if let Some(pos) = e.iter().rposition(|(i, _)| i == id) {
                let (_, prev) = e.remove(pos);
                if pos == e.len() {
                    context::swap(prev);
                } else {
                    e[pos].1 = prev;
                }
            }
        });
    }
}

fn context_raw(id: ContextId) -> u32 {
    id.raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_join_the_chosen_fields_in_order() {
        let l = ContextLayer::default();
        let idx = |f: &str| DEFAULT_FIELDS.iter().position(|x| *x == f).unwrap();
        assert_eq!(l.label("request", &[]), "request");
        assert_eq!(
            l.label("request", &[(idx("matched_path"), "/{key}".into()), (idx("method"), "POST".into())]),
            "POST /{key}"
        );
        assert_eq!(
            l.label("request", &[(idx("otel.name"), "GET /kv".into()), (idx("method"), "GET".into())]),
            "GET /kv"
        );
    }
}
