//! The gate's counts and the adapter's own measures (callouts by target and status, their
//! latency, cache sizes) handed to the host's metric API, which Envoy shows in `/stats` and
//! `/stats/prometheus` as `wasmcustom.wasm_oauth2_proxy.*`. Counters are pushed as deltas
//! on the tick, so requests make no host call for them.

use super::host::{Host, Metric};
use crate::metrics::{Metrics, PREFIX};
use std::collections::HashMap;

#[derive(Default)]
pub(super) struct Stats {
    /// Metric id and the total already pushed, by name.
    counters: HashMap<String, (u32, u64)>,
    gauges: HashMap<&'static str, u32>,
    latency: Option<u32>,
}

impl Stats {
    fn counter(&mut self, host: &mut impl Host, name: &str) -> Option<&mut (u32, u64)> {
        if !self.counters.contains_key(name) {
            let id = host.define_metric(Metric::Counter, &format!("{PREFIX}.{name}"))?;
            self.counters.insert(name.to_string(), (id, 0));
        }
        self.counters.get_mut(name)
    }

    /// Pushes what was counted since the last flush, and the gauges' current values.
    pub(super) fn flush(
        &mut self,
        host: &mut impl Host,
        metrics: &Metrics,
        gauges: &[(&'static str, u64)],
    ) {
        for (name, total) in metrics.totals() {
            if let Some((id, pushed)) = self.counter(host, name) {
                if total > *pushed {
                    host.increment_metric(*id, total - *pushed);
                    *pushed = total;
                }
            }
        }
        for (name, value) in gauges {
            let id = match self.gauges.get(name) {
                Some(id) => Some(*id),
                None => host.define_metric(Metric::Gauge, &format!("{PREFIX}.{name}")),
            };
            if let Some(id) = id {
                self.gauges.insert(name, id);
                host.record_metric(id, *value);
            }
        }
    }

    /// One IdP callout answered: counted by what it was for and its status class, and its
    /// latency recorded in milliseconds.
    pub(super) fn callout(
        &mut self,
        host: &mut impl Host,
        target: &str,
        status: Option<u16>,
        millis: u64,
    ) {
        let class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "failed".to_string(),
        };
        if let Some((id, pushed)) = self.counter(host, &format!("callout.{target}.{class}")) {
            host.increment_metric(*id, 1);
            *pushed += 1;
        }
        if self.latency.is_none() {
            self.latency =
                host.define_metric(Metric::Histogram, &format!("{PREFIX}.callout_latency_ms"));
        }
        if let Some(id) = self.latency {
            host.record_metric(id, millis);
        }
    }
}
