//! Running a loom model: every execution counted and timed, and a broken
//! variant's run expected to fail with a given message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A builder that explores every interleaving up to `preemptions`
/// preemptions (None: all), never cut short by time or count (so
/// `LOOM_MAX_DURATION` or `LOOM_MAX_PERMUTATIONS` in the environment cannot
/// make a model pass by stopping early).
fn builder(preemptions: Option<usize>) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemptions;
    builder.max_duration = None;
    builder.max_permutations = None;
    // Spin-waits (a writer draining readers, a flush waiting for its
    // answer) take many branches on the long paths; loom's default of 1,000
    // stops such an execution as if it were a livelock.
    builder.max_branches = 20_000;
    builder
}

/// Checks `model` under every interleaving (up to the bound); returns how
/// many executions loom ran and prints it with the time taken.
pub fn check<F>(name: &str, preemptions: Option<usize>, model: F) -> usize
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    builder(preemptions).check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let runs = runs.load(Ordering::Relaxed);
    println!(
        "model {name}: {runs} executions, preemption bound {preemptions:?}, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    runs
}

/// Runs `model`, a deliberately broken variant, and asserts that loom finds
/// an execution that panics with a message containing one of `expected`. Prints
/// after how many executions it did.
pub fn expect_bug<F>(name: &str, preemptions: Option<usize>, expected: &[&str], model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    println!("broken variant {name}: loom must find a failure (its panic is printed next)");
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    // The failing execution's panic message is printed (the panic hook is
    // left alone: loom's generator crate filters its own panics there).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder(preemptions).check(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            model();
        })
    }));
    let runs = runs.load(Ordering::Relaxed);
    let payload = match outcome {
        Ok(()) => panic!("broken variant {name}: loom explored {runs} executions and found no failure"),
        Err(payload) => payload,
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        expected.iter().any(|e| message.contains(e)),
        "broken variant {name}: failed, but with {message:?}, not {expected:?}"
    );
    println!(
        "broken variant {name}: caught after {runs} executions, {:.1} s: {message}",
        start.elapsed().as_secs_f64()
    );
}

/// How often each outcome of a model happened, over all its executions:
/// the models assert that the interesting ones did (a model whose reader
/// never gets the lock after the writer checks nothing about that case).
pub struct Outcomes {
    names: &'static [&'static str],
    counts: Vec<AtomicUsize>,
}

impl Outcomes {
    pub fn new(names: &'static [&'static str]) -> Arc<Outcomes> {
        Arc::new(Outcomes { names, counts: names.iter().map(|_| AtomicUsize::new(0)).collect() })
    }

    pub fn record(&self, outcome: usize) {
        self.counts[outcome].fetch_add(1, Ordering::Relaxed);
    }

    /// Prints the counts; panics if one of `required` never happened.
    pub fn require(&self, model: &str, required: &[usize]) {
        let counts: Vec<String> = self
            .names
            .iter()
            .zip(&self.counts)
            .map(|(name, count)| format!("{name} {}", count.load(Ordering::Relaxed)))
            .collect();
        println!("  {model} outcomes: {}", counts.join(", "));
        for &outcome in required {
            assert!(
                self.counts[outcome].load(Ordering::Relaxed) > 0,
                "{model}: no execution reached outcome {:?}: the model is vacuous there",
                self.names[outcome]
            );
        }
    }
}
