//! The ratio table printed after a criterion run: each eventum figure beside its reference
//! (tungstenite, or a plain copy for unmasking), both measured in the same run.
//!
//! Criterion writes each benchmark's estimates to `<criterion dir>/<group>/<function>/<value>/new/`.
//! The bench runs every benchmark several times over (passes) and [`collect`]s after each
//! pass only the files written during it, so a benchmark that was filtered out shows as
//! "not run" rather than with a stale figure. On a shared, noisy machine a ratio taken
//! within one pass and then the median over passes is far steadier than one long run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

/// One line of the table: `subject` against `reference` in `group` at `param`.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The criterion group, e.g. `"decode"`.
    pub group: &'static str,
    /// The parameter (the directory name of the value), e.g. `"16"`.
    pub param: String,
    /// The function measured, e.g. `"eventum"`.
    pub subject: &'static str,
    /// The function it is compared with, e.g. `"tungstenite"`.
    pub reference: &'static str,
    /// The target for `reference time / subject time`, if it states one.
    pub target: Option<f64>,
}

impl Comparison {
    /// A comparison without a stated target.
    pub fn new(group: &'static str, param: impl ToString, subject: &'static str, reference: &'static str) -> Self {
        Comparison {
            group,
            param: param.to_string(),
            subject,
            reference,
            target: None,
        }
    }

    /// The same comparison with a target ratio.
    pub fn target(mut self, ratio: f64) -> Self {
        self.target = Some(ratio);
        self
    }
}

/// What one benchmark measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Median time of one iteration, in nanoseconds.
    pub median_ns: f64,
    /// Work done by one iteration.
    pub throughput: Option<Throughput>,
}

/// Work per iteration, as declared with criterion's `Throughput`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throughput {
    /// Bytes processed.
    Bytes(u64),
    /// Elements (messages, events, handshakes) processed.
    Elements(u64),
}

impl Measured {
    /// The throughput as text: GiB/s or MiB/s for bytes, M/s or K/s for elements.
    pub fn rate(&self) -> String {
        let per_second = |n: u64| n as f64 / (self.median_ns * 1e-9);
        match self.throughput {
            Some(Throughput::Bytes(n)) => {
                let r = per_second(n);
                if r >= (1u64 << 30) as f64 {
                    format!("{:.2} GiB/s", r / (1u64 << 30) as f64)
                } else {
                    format!("{:.1} MiB/s", r / (1u64 << 20) as f64)
                }
            }
            Some(Throughput::Elements(n)) => {
                let r = per_second(n);
                if r >= 1e6 {
                    format!("{:.2} M/s", r / 1e6)
                } else {
                    format!("{:.1} K/s", r / 1e3)
                }
            }
            None => format!("{:.0} ns", self.median_ns),
        }
    }
}

/// Where criterion keeps its results: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
/// else the workspace's `target/criterion`. Pass it to `Criterion::output_directory` so the
/// report reads what criterion wrote.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// Reads one benchmark's median and throughput, if this run (after `since`) wrote them.
pub fn measured(dir: &Path, group: &str, function: &str, param: &str, since: SystemTime) -> Option<Measured> {
    let new = dir.join(group).join(function).join(param).join("new");
    let estimates = new.join("estimates.json");
    let written = std::fs::metadata(&estimates).and_then(|m| m.modified()).ok()?;
    if written < since {
        return None;
    }
    let estimates: Value = serde_json::from_slice(&std::fs::read(&estimates).ok()?).ok()?;
    let median_ns = estimates.get("median")?.get("point_estimate")?.as_f64()?;
    let benchmark: Option<Value> = std::fs::read(new.join("benchmark.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let throughput = benchmark.as_ref().and_then(|b| b.get("throughput")).and_then(|t| {
        if let Some(n) = t.get("Bytes").and_then(Value::as_u64) {
            Some(Throughput::Bytes(n))
        } else {
            t.get("Elements").and_then(Value::as_u64).map(Throughput::Elements)
        }
    });
    Some(Measured { median_ns, throughput })
}

/// The results of one pass over the benchmarks: every benchmark whose estimates were
/// written after `since`, keyed by (group, function, parameter).
pub type Pass = HashMap<(String, String, String), Measured>;

/// Reads every benchmark of `dir` that this pass (after `since`) measured.
pub fn collect(dir: &Path, since: SystemTime) -> Pass {
    let mut pass = Pass::new();
    let subdirs = |path: &Path| -> Vec<String> {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for group in subdirs(dir) {
        for function in subdirs(&dir.join(&group)) {
            for param in subdirs(&dir.join(&group).join(&function)) {
                if let Some(m) = measured(dir, &group, &function, &param, since) {
                    pass.insert((group.clone(), function.clone(), param), m);
                }
            }
        }
    }
    pass
}

fn key(group: &str, function: &str, param: &str) -> (String, String, String) {
    (group.to_owned(), function.to_owned(), param.to_owned())
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// One benchmark's median time over the passes that measured it.
pub fn median_over(passes: &[Pass], group: &str, function: &str, param: &str) -> Option<Measured> {
    let k = key(group, function, param);
    let found: Vec<Measured> = passes.iter().filter_map(|p| p.get(&k).copied()).collect();
    let throughput = found.first()?.throughput;
    let median_ns = median(found.iter().map(|m| m.median_ns).collect())?;
    Some(Measured { median_ns, throughput })
}

/// Builds the ratio table (Markdown) of `comparisons`; `None` when no pass measured any of
/// them (e.g. `cargo test --benches`, or a filter).
///
/// A ratio is `reference time / subject time` for the same work within one pass (so both
/// were measured minutes apart at most); the table shows the median over the passes and
/// their range. Above 1 the subject (eventum) is faster. Rates are medians over passes.
pub fn table(comparisons: &[Comparison], passes: &[Pass]) -> Option<String> {
    let mut any = false;
    let mut out = String::new();
    out.push_str(
        "| group | size | eventum (median) | reference (median) | ratio (median) | range over passes | target |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for c in comparisons {
        let (ks, kr) = (key(c.group, c.subject, &c.param), key(c.group, c.reference, &c.param));
        let ratios: Vec<f64> = passes
            .iter()
            .filter_map(|p| Some(p.get(&kr)?.median_ns / p.get(&ks)?.median_ns))
            .collect();
        let subject = median_over(passes, c.group, c.subject, &c.param);
        let reference = median_over(passes, c.group, c.reference, &c.param);
        let (ratio, range, verdict) = match median(ratios.clone()) {
            Some(ratio) => {
                any = true;
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                let verdict = match c.target {
                    Some(t) if ratio >= t => format!("≥ {t}× (met)"),
                    Some(t) => format!("≥ {t}× (MISSED)"),
                    None => "-".to_owned(),
                };
                (
                    format!("**{ratio:.2}×**"),
                    format!("{lo:.2}–{hi:.2} ({})", ratios.len()),
                    verdict,
                )
            }
            None => ("not run".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let show = |name: &str, m: Option<Measured>| match m {
            Some(m) => format!("{name}: {}", m.rate()),
            None => format!("{name}: not run"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.group,
            c.param,
            show(c.subject, subject),
            show(c.reference, reference),
            ratio,
            range,
            verdict
        );
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, group: &str, function: &str, param: &str, ns: f64) {
        let new = dir.join(group).join(function).join(param).join("new");
        std::fs::create_dir_all(&new).unwrap();
        let estimates = serde_json::json!({"median": {"point_estimate": ns}});
        std::fs::write(new.join("estimates.json"), estimates.to_string()).unwrap();
        let benchmark = serde_json::json!({"throughput": {"Elements": 1000}});
        std::fs::write(new.join("benchmark.json"), benchmark.to_string()).unwrap();
    }

    #[test]
    fn reads_each_pass_and_takes_the_median_ratio() {
        let dir = std::env::temp_dir().join(format!("eventum-report-test-{}", std::process::id()));
        let since = SystemTime::now() - std::time::Duration::from_secs(5);
        let mut passes = Vec::new();
        for (eventum, tungstenite) in [(100.0, 300.0), (100.0, 200.0), (50.0, 400.0)] {
            write(&dir, "decode", "eventum", "16", eventum);
            write(&dir, "decode", "tungstenite", "16", tungstenite);
            passes.push(collect(&dir, since));
        }
        let m = measured(&dir, "decode", "eventum", "16", since).unwrap();
        assert_eq!(m.throughput, Some(Throughput::Elements(1000)));
        assert_eq!(m.rate(), "20000.00 M/s");
        assert_eq!(
            median_over(&passes, "decode", "eventum", "16").unwrap().median_ns,
            100.0
        );
        let table = table(
            &[
                Comparison::new("decode", 16, "eventum", "tungstenite").target(3.0),
                Comparison::new("decode", 1024, "eventum", "tungstenite"),
            ],
            &passes,
        )
        .unwrap();
        // Ratios 3, 2 and 8: the median is 3.
        assert!(table.contains("**3.00×** | 2.00–8.00 (3) | ≥ 3× (met)"), "{table}");
        assert!(table.contains("| decode | 1024 | eventum: not run"), "{table}");
        assert!(super::table(&[Comparison::new("encode", 16, "eventum", "tungstenite")], &passes).is_none());
        // Files older than the pass do not count.
        assert!(collect(&dir, SystemTime::now() + std::time::Duration::from_secs(60)).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
