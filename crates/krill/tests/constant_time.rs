//! Timing of `ApiKey::matches`, measured rather than assumed (issue 7).
//!
//! Method: candidates of several classes (wrong in the first character,
//! wrong in the last, right, another length) are timed in *batches* of
//! calls. Each round times one batch of every class, in a freshly shuffled
//! order, so drift in machine load, frequency scaling and order effects
//! fall on all classes alike. For each round the batch time of a class is
//! divided by that of the reference class (wrong in the first character)
//! timed in the same round; the median of those ratios over all rounds is
//! the class's relative timing difference. A median of per-round ratios
//! shrugs off the rounds a noisy neighbour or the scheduler spoiled.
//!
//! The quick test runs in a debug build and fails when a class differs by
//! more than [`THRESHOLD`]. A deliberately leaky comparison, measured the
//! same way in the same run, must exceed it: that shows the method can see
//! the kind of leak it guards against, so a pass means something.
//!
//! `constant_time_report` (ignored; run it in release mode) measures longer,
//! adds the naive `==` comparison and a Welch t-test, and prints the table
//! kept in `bench/constant_time.md`:
//!
//! ```text
//! cargo test --release -p krill --test constant_time -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use krill::key::ApiKey;

/// Largest relative difference of a class's median batch time from the
/// reference class that still counts as noise.
///
/// Justification: on this 2-core shared machine, in the debug build, the
/// same-class control (two candidates both wrong in the first character)
/// and every class of `matches` stayed within ±0.36% of the reference in
/// the 10 runs whose numbers were collected (during a `testssl.sh` run);
/// the test passed in 35 of 35 runs, many with both cores loaded. A check
/// that stops at the first wrong byte of a 36-character key showed +18% to
/// +22% in the same runs. 3% is 8 times the largest difference seen and 6
/// times below the smallest leak the test must catch (docs/security.md).
const THRESHOLD: f64 = 0.03;

/// A key of the shape `krill init` makes. Not a secret: it exists only here.
const KEY: &str = "0d9c3b8e-7a51-4f7e-9c1e-5b2f8a6d4c31";

/// Small, seeded, dependency-free PRNG (SplitMix64) for shuffling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// One class: a name for the report, the key it is checked against and
/// the candidate submitted, and which class it is compared with.
#[derive(Clone)]
struct Class {
    name: &'static str,
    key: Vec<u8>,
    candidate: Vec<u8>,
    reference: usize,
}

/// `key` with the byte at `index` replaced by a different visible character.
fn wrong_at(key: &[u8], index: usize, replacement: u8) -> Vec<u8> {
    let mut bytes = key.to_vec();
    bytes[index] = if bytes[index] == replacement {
        replacement + 1
    } else {
        replacement
    };
    bytes
}

/// The classes the issue asks for, plus a same-class control. Class 0,
/// wrong in the first character, is the reference of the first four.
///
/// The length class cannot be compared with class 0 directly: hashing a
/// shorter candidate is cheaper whatever the key, and the attacker knows
/// the length of what they send. What must not show is the *key's* length,
/// so the same short candidate is timed against this key (class 4) and
/// against a key of the candidate's own length (class 5, its reference).
fn classes(key: &[u8]) -> Vec<Class> {
    let short = wrong_at(&key[..key.len() / 2], 0, b'~');
    let short_key = key[..key.len() / 2].to_vec();
    let class = |name, key: &[u8], candidate: Vec<u8>, reference| Class {
        name,
        key: key.to_vec(),
        candidate,
        reference,
    };
    vec![
        class("wrong first character", key, wrong_at(key, 0, b'x'), 0),
        class(
            "wrong first character (control)",
            key,
            wrong_at(key, 0, b'y'),
            0,
        ),
        class(
            "wrong last character",
            key,
            wrong_at(key, key.len() - 1, b'x'),
            0,
        ),
        class("right", key, key.to_vec(), 0),
        class("half-length candidate", key, short.clone(), 5),
        class(
            "same candidate, key of its length (reference of the above)",
            &short_key,
            short,
            5,
        ),
    ]
}

/// A check of candidates against one key.
type Checker = Box<dyn Fn(&[u8]) -> bool>;

/// Makes the [`Checker`] for a key.
type Check<'a> = &'a dyn Fn(&[u8]) -> Checker;

/// Batch times in nanoseconds, `[class][round]`.
fn measure(
    check: Check<'_>,
    classes: &[Class],
    rounds: usize,
    calls_per_batch: usize,
    seed: u64,
) -> Vec<Vec<f64>> {
    let mut rng = Rng(seed);
    let checkers: Vec<_> = classes.iter().map(|c| check(&c.key)).collect();
    let mut times = vec![Vec::with_capacity(rounds); classes.len()];
    let mut order: Vec<usize> = (0..classes.len()).collect();
    // Warm-up: caches, branch predictors, CPU frequency.
    for (class, checker) in classes.iter().zip(&checkers) {
        for _ in 0..calls_per_batch * 20 {
            black_box(checker(black_box(&class.candidate)));
        }
    }
    for _ in 0..rounds {
        rng.shuffle(&mut order);
        for &c in &order {
            let (candidate, checker) = (&classes[c].candidate, &checkers[c]);
            let start = Instant::now();
            for _ in 0..calls_per_batch {
                black_box(checker(black_box(candidate)));
            }
            times[c].push(start.elapsed().as_nanos() as f64);
        }
    }
    times
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// Median over rounds of `class / reference` batch times, minus one.
fn relative_difference(class: &[f64], reference: &[f64]) -> f64 {
    let ratios: Vec<f64> = class.iter().zip(reference).map(|(c, r)| c / r).collect();
    median(&ratios) - 1.0
}

/// Welch's t statistic of two samples, after dropping (as dudect does) the
/// values above the pooled 90th percentile: those are rounds the scheduler
/// interrupted, and they only add noise.
fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let cut = percentile(&pooled, 0.90);
    let stats = |xs: &[f64]| {
        let kept: Vec<f64> = xs.iter().copied().filter(|x| *x <= cut).collect();
        let n = kept.len() as f64;
        let mean = kept.iter().sum::<f64>() / n;
        let var = kept.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var, n)
    };
    let (ma, va, na) = stats(a);
    let (mb, vb, nb) = stats(b);
    (ma - mb) / (va / na + vb / nb).sqrt()
}

fn sha256(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}

/// A careless check, as a positive control: it hashes the candidate like
/// `matches` does (so its cost is comparable), then compares the plain
/// text byte by byte and stops at the first difference.
fn leaky_matches(secret: &[u8], candidate: &[u8]) -> bool {
    black_box(sha256(candidate));
    if secret.len() != candidate.len() {
        return false;
    }
    for (a, b) in secret.iter().zip(candidate) {
        if a != b {
            return false;
        }
    }
    true
}

/// Per-class summary: median ns per call, relative difference to the
/// reference class, Welch t against it.
struct Row {
    name: &'static str,
    ns_per_call: f64,
    difference: f64,
    t: f64,
}

fn summarize(classes: &[Class], times: &[Vec<f64>], calls_per_batch: usize) -> Vec<Row> {
    classes
        .iter()
        .zip(times)
        .map(|(class, t)| Row {
            name: class.name,
            ns_per_call: median(t) / calls_per_batch as f64,
            difference: relative_difference(t, &times[class.reference]),
            t: welch_t(t, &times[class.reference]),
        })
        .collect()
}

fn table(title: &str, rows: &[Row]) -> String {
    let mut out = format!(
        "{title}\n\n| class | median ns/call | vs its reference (median of per-round ratios) | Welch t vs reference |\n\
         |---|---:|---:|---:|\n"
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {:+.2}% | {:+.1} |\n",
            row.name,
            row.ns_per_call,
            row.difference * 100.0,
            row.t
        ));
    }
    out
}

fn real(key: &[u8]) -> Checker {
    let key = ApiKey::parse(key).unwrap();
    Box::new(move |candidate| key.matches(candidate))
}

fn naive(key: &[u8]) -> Checker {
    let key = key.to_vec();
    Box::new(move |candidate| candidate == key.as_slice())
}

fn leaky(key: &[u8]) -> Checker {
    let key = key.to_vec();
    Box::new(move |candidate| leaky_matches(&key, candidate))
}

#[test]
fn key_check_time_does_not_depend_on_where_or_whether_the_candidate_is_wrong() {
    let classes = classes(KEY.as_bytes());
    // Sanity: the classes are what their names say, without printing them.
    let outcomes: Vec<bool> = classes.iter().map(|c| real(&c.key)(&c.candidate)).collect();
    assert!(
        outcomes == [false, false, false, true, false, false],
        "the classes are not built as named: {outcomes:?}"
    );
    let seed = 0x6b72_696c_6c00_0007;
    let (rounds, calls) = (1500, 40);

    let started = Instant::now();
    let real_rows = summarize(
        &classes,
        &measure(&real, &classes, rounds, calls, seed),
        calls,
    );
    let leaky_rows = summarize(
        &classes,
        &measure(&leaky, &classes, rounds, calls, seed),
        calls,
    );
    // Shown with --nocapture, and on failure below.
    let report = format!(
        "{}\n{}\nrounds={rounds} calls/batch={calls} seed={seed:#x} took {:?}",
        table("ApiKey::matches", &real_rows),
        table("leaky control", &leaky_rows),
        started.elapsed()
    );
    println!("{report}");

    // The method must see the leak of the careless check: wrong in the last
    // character costs 35 more byte comparisons than wrong in the first.
    let control = leaky_rows[2].difference;
    assert!(
        control > THRESHOLD,
        "the method failed to see the leaky control's difference ({:+.2}%), so it \
         cannot vouch for `matches` in this run\n{report}",
        control * 100.0
    );
    for row in &real_rows {
        assert!(
            row.difference.abs() <= THRESHOLD,
            "ApiKey::matches takes {:+.2}% longer for `{}` than for its reference class \
             (limit ±{:.0}%)\n{report}",
            row.difference * 100.0,
            row.name,
            THRESHOLD * 100.0
        );
    }
}

/// The measurement in `bench/constant_time.md`. Release mode, longer.
#[test]
#[ignore = "a measurement for bench/constant_time.md: run with --release -- --ignored --nocapture"]
fn constant_time_report() {
    let seed = 0x6b72_696c_6c00_0007;
    let (rounds, calls) = (20_000, 50);
    let long_key: String = (0..krill::key::MAX_KEY_LEN)
        .map(|i| (b'!' + (i * 7 % 94) as u8) as char)
        .collect();
    let mut out = format!(
        "rounds={rounds}, calls per batch={calls}, seed={seed:#x}; each round times one batch \
         of every class in shuffled order.\n\n"
    );
    for (label, text) in [("36-character key", KEY), ("512-character key", &long_key)] {
        let classes = classes(text.as_bytes());
        let started = Instant::now();
        for (what, check) in [
            ("`ApiKey::matches`", &real as Check<'_>),
            ("naive `candidate == key` (slice `==`, memcmp)", &naive),
            (
                "leaky control (hash, then byte loop with early exit)",
                &leaky,
            ),
        ] {
            let times = measure(check, &classes, rounds, calls, seed);
            out.push_str(&table(
                &format!("### {what}, {label}"),
                &summarize(&classes, &times, calls),
            ));
            out.push('\n');
        }
        out.push_str(&format!("({label}: {:?})\n\n", started.elapsed()));
    }
    println!("{out}");
}
