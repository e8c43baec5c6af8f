//! `make bench`: boots the benchmark programs of `user/` on the release
//! kernel on 1, 2 and 4 CPUs, in both lock modes (`boot --lock vma|mmap`),
//! and optionally on Linux 6.12 (the same binaries as /init under the same
//! QEMU, as `linux-peer` runs them), several runs each. Prints progress and
//! tables of medians with min-max, writes `target/bench/results.json` and
//! one SVG plot per figure against the CPU count.
//!
//! Usage: `bench --boot BOOT --kernel KERNEL [--user DIR] [--out DIR]
//! [--quick] [--runs N] [--cpus 1,2,4] [--linux VMLINUZ]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One figure a benchmark prints, found in its output by `parse`.
struct Metric {
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    /// Larger is better (rates) or smaller (costs).
    higher_is_better: bool,
    parse: fn(&str, u32) -> Option<f64>,
}

struct Benchmark {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    metrics: Vec<Metric>,
}

/// The number right after `prefix` in `line` (digits and one dot).
fn number_after(line: &str, prefix: &str) -> Option<f64> {
    let at = line.find(prefix)? + prefix.len();
    let digits: String = line[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().ok()
}

fn storm_summary(out: &str) -> Option<&str> {
    out.lines().find(|l| l.contains("fault_storm: median of"))
}

fn benchmarks(quick: bool) -> Vec<Benchmark> {
    // fault_storm: ROUNDS and REPS; each boot reports the median of REPS.
    let storm_args = if quick { ["200", "1"] } else { ["400", "3"] };
    vec![
        Benchmark {
            name: "fault_storm",
            program: "fault_storm",
            args: storm_args.iter().map(|s| s.to_string()).collect(),
            metrics: vec![
                Metric {
                    key: "alone",
                    title: "fault_storm: faults alone",
                    unit: "faults/Mtick",
                    higher_is_better: true,
                    parse: |out, _| number_after(storm_summary(out)?, "alone "),
                },
                Metric {
                    key: "storm",
                    title: "fault_storm: faults during the mmap/munmap storm",
                    unit: "faults/Mtick",
                    higher_is_better: true,
                    parse: |out, _| number_after(storm_summary(out)?, "storm "),
                },
                Metric {
                    key: "keeps",
                    title: "fault_storm: storm rate as % of alone",
                    unit: "%",
                    higher_is_better: true,
                    parse: |out, _| number_after(storm_summary(out)?, "keeps "),
                },
            ],
        },
        Benchmark {
            name: "fault_rate",
            program: "fault_rate",
            args: Vec::new(),
            metrics: vec![Metric {
                key: "rate",
                title: "fault_rate: demand-zero faults, one thread, fresh 16 MiB",
                unit: "faults/Mtick",
                higher_is_better: true,
                parse: |out, _| out.lines().find_map(|l| number_after(l, "TSC ticks = ")),
            }],
        },
        Benchmark {
            name: "unmap_cost",
            program: "unmap_cost",
            args: Vec::new(),
            metrics: vec![
                Metric {
                    key: "shootdown",
                    title: "unmap_cost: one-page munmap, space loaded on every CPU",
                    unit: "TSC cycles",
                    higher_is_better: false,
                    parse: |out, cpus| {
                        let prefix = format!("one-page munmap with the space on {cpus} CPUs: median ");
                        out.lines().find_map(|l| number_after(l, &prefix))
                    },
                },
                Metric {
                    key: "touched",
                    title: "unmap_cost: map, touch, unmap 128 MiB",
                    unit: "pages/Mtick",
                    higher_is_better: true,
                    parse: |out, _| out.lines().find_map(|l| number_after(l, "map/touch/unmap: ")),
                },
            ],
        },
    ]
}

struct Options {
    boot: PathBuf,
    kernel: PathBuf,
    user: PathBuf,
    out: PathBuf,
    quick: bool,
    runs: usize,
    cpus: Vec<u32>,
    linux: Option<PathBuf>,
}

fn usage(problem: &str) -> ! {
    eprintln!("bench: {problem}");
    eprintln!(
        "usage: bench --boot BOOT --kernel KERNEL [--user DIR] [--out DIR] [--quick] [--runs N] [--cpus 1,2,4] [--linux VMLINUZ]"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        boot: PathBuf::new(),
        kernel: PathBuf::new(),
        user: PathBuf::from("user/out"),
        out: PathBuf::from("target/bench"),
        quick: false,
        runs: 0,
        cpus: vec![1, 2, 4],
        linux: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--boot" => o.boot = value().into(),
            "--kernel" => o.kernel = value().into(),
            "--user" => o.user = value().into(),
            "--out" => o.out = value().into(),
            "--linux" => o.linux = Some(value().into()),
            "--quick" => o.quick = true,
            "--runs" => o.runs = value().parse().unwrap_or_else(|_| usage("--runs takes a number")),
            "--cpus" => {
                o.cpus = value()
                    .split(',')
                    .map(|c| c.parse().unwrap_or_else(|_| usage("--cpus takes numbers like 1,2,4")))
                    .collect()
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown option {other}")),
        }
    }
    if o.boot.as_os_str().is_empty() || o.kernel.as_os_str().is_empty() {
        usage("--boot and --kernel are required");
    }
    if o.runs == 0 {
        o.runs = if o.quick { 1 } else { 3 };
    }
    o
}

/// The modes compared: our kernel in each lock mode, and Linux if asked.
fn modes(o: &Options) -> Vec<&'static str> {
    let mut m = vec!["vma", "mmap"];
    if o.linux.is_some() {
        m.push("linux");
    }
    m
}

/// A newc cpio archive holding `data` as the executable `/init`.
fn cpio_with_init(data: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    entry(&mut out, "init", 0o100755, data);
    entry(&mut out, "TRAILER!!!", 0, &[]);
    out
}

/// Boots `bench` once; its console output, or why it failed.
fn run_once(o: &Options, bench: &Benchmark, cpus: u32, mode: &str) -> Result<String, String> {
    let program = o.user.join(bench.program);
    let output = if mode == "linux" {
        // As linux-peer runs a program: Debian's 6.12 cloud kernel, the
        // program alone as /init, the machine's default QEMU CPU, 1 GiB.
        let data = std::fs::read(&program).map_err(|e| format!("{}: {e}", program.display()))?;
        let initrd = o.out.join(format!("initrd-{}.cpio", bench.program));
        std::fs::write(&initrd, cpio_with_init(&data)).map_err(|e| format!("{}: {e}", initrd.display()))?;
        let mut append = String::from("console=ttyS0 quiet panic=-1");
        if !bench.args.is_empty() {
            append.push_str(" --");
            for a in &bench.args {
                append.push(' ');
                append.push_str(a);
            }
        }
        Command::new("timeout")
            .arg("600")
            .arg("qemu-system-x86_64")
            .arg("-kernel")
            .arg(o.linux.as_ref().expect("linux mode has a kernel"))
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", &append, "-nographic", "-no-reboot", "-m", "1G", "-smp", &cpus.to_string()])
            .stdin(Stdio::null())
            .output()
    } else {
        let mut cmd = Command::new(&o.boot);
        cmd.args(["--smp", &cpus.to_string(), "--lock", mode, "--init"]).arg(&program);
        for a in &bench.args {
            cmd.args(["--arg", a]);
        }
        cmd.arg(&o.kernel).stdin(Stdio::null()).output()
    }
    .map_err(|e| format!("could not start: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    if mode != "linux" && !output.status.success() {
        return Err(format!("exit status {:?}; last lines: {}", output.status.code(), tail(&text)));
    }
    Ok(text)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Samples of one metric: (benchmark, metric) -> (cpus, mode) -> values.
type Samples = BTreeMap<(String, String), BTreeMap<(u32, String), Vec<f64>>>;

fn median_min_max(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some((median, v[0], v[n - 1]))
}

fn fmt_value(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_cell(values: Option<&Vec<f64>>) -> String {
    match values.and_then(|v| median_min_max(v)) {
        Some((m, lo, hi)) if lo == hi => fmt_value(m),
        Some((m, lo, hi)) => format!("{} ({}-{})", fmt_value(m), fmt_value(lo), fmt_value(hi)),
        None => "-".to_string(),
    }
}

fn mode_label(mode: &str) -> &'static str {
    match mode {
        "vma" => "per-VMA locks",
        "mmap" => "mmap_lock",
        _ => "Linux 6.12",
    }
}

fn tables(o: &Options, benches: &[Benchmark], samples: &Samples) -> String {
    let modes = modes(o);
    let mut out = String::new();
    for b in benches {
        for m in &b.metrics {
            let Some(per) = samples.get(&(b.name.to_string(), m.key.to_string())) else { continue };
            let better = if m.higher_is_better { "higher is better" } else { "lower is better" };
            let _ = writeln!(out, "\n{} [{}; {better}; median (min-max) of {} runs]", m.title, m.unit, o.runs);
            let _ = write!(out, "| CPUs |");
            for mode in &modes {
                let _ = write!(out, " {} |", mode_label(mode));
            }
            let _ = write!(out, "\n|---|");
            for _ in &modes {
                let _ = write!(out, "---|");
            }
            out.push('\n');
            for &cpus in &o.cpus {
                let _ = write!(out, "| {cpus} |");
                for mode in &modes {
                    let _ = write!(out, " {} |", fmt_cell(per.get(&(cpus, mode.to_string()))));
                }
                out.push('\n');
            }
        }
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn json(o: &Options, benches: &[Benchmark], samples: &Samples, wall: Duration) -> String {
    let commit = command_output("git", &["rev-parse", "HEAD"]);
    let dirty = !command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let date = command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let host_cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"git_commit\": {},", json_string(&commit));
    let _ = writeln!(out, "  \"git_dirty\": {dirty},");
    let _ = writeln!(out, "  \"date\": {},", json_string(&date));
    let _ = writeln!(out, "  \"host_cpus\": {host_cpus},");
    let _ = writeln!(out, "  \"quick\": {},", o.quick);
    let _ = writeln!(out, "  \"runs\": {},", o.runs);
    let _ = writeln!(out, "  \"wall_seconds\": {},", wall.as_secs());
    let _ = writeln!(out, "  \"kernel\": {},", json_string(&o.kernel.display().to_string()));
    if let Some(l) = &o.linux {
        let _ = writeln!(out, "  \"linux_kernel\": {},", json_string(&l.display().to_string()));
    }
    let _ = writeln!(out, "  \"results\": [");
    let mut rows = Vec::new();
    for b in benches {
        for m in &b.metrics {
            let Some(per) = samples.get(&(b.name.to_string(), m.key.to_string())) else { continue };
            for ((cpus, mode), values) in per {
                let Some((median, min, max)) = median_min_max(values) else { continue };
                let list: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                rows.push(format!(
                    "    {{\"benchmark\": {}, \"metric\": {}, \"unit\": {}, \"args\": {}, \"cpus\": {cpus}, \"lock_mode\": {}, \"median\": {median}, \"min\": {min}, \"max\": {max}, \"values\": [{}]}}",
                    json_string(b.name),
                    json_string(m.key),
                    json_string(m.unit),
                    json_string(&b.args.join(" ")),
                    json_string(mode),
                    list.join(", ")
                ));
            }
        }
    }
    let _ = writeln!(out, "{}", rows.join(",\n"));
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

/// A line chart of one metric against the CPU count: one line per mode,
/// at the median, with a bar from min to max.
fn svg(o: &Options, metric: &Metric, per: &BTreeMap<(u32, String), Vec<f64>>) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 80.0, 180.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let ymax = per.values().flat_map(|v| v.iter().copied()).fold(0.0f64, f64::max) * 1.1;
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    let n = o.cpus.len().max(2) as f64 - 1.0;
    let x = |i: usize| left + pw * i as f64 / n;
    let y = |v: f64| top + ph - ph * v / ymax;
    let colours = [("vma", "#1f77b4"), ("mmap", "#d62728"), ("linux", "#2ca02c")];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ =
        writeln!(s, "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>", w / 2.0, metric.title);
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>",
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
            left - 6.0,
            y(v) + 4.0,
            fmt_value(v),
            y(v),
            left + pw,
            y(v)
        );
    }
    for (i, cpus) in o.cpus.iter().enumerate() {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{cpus}</text>", x(i), top + ph + 18.0);
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">CPUs</text>", left + pw / 2.0, h - 10.0);
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{}</text>",
        top + ph / 2.0,
        top + ph / 2.0,
        metric.unit
    );
    for (k, mode) in modes(o).iter().enumerate() {
        let colour = colours.iter().find(|(m, _)| m == mode).map(|c| c.1).unwrap_or("black");
        let mut points = Vec::new();
        for (i, cpus) in o.cpus.iter().enumerate() {
            if let Some((m, lo, hi)) = per.get(&(*cpus, mode.to_string())).and_then(|v| median_min_max(v)) {
                points.push(format!("{:.1},{:.1}", x(i), y(m)));
                let _ = writeln!(
                    s,
                    "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"{colour}\"/><circle cx=\"{0:.1}\" cy=\"{3:.1}\" r=\"3\" fill=\"{colour}\"/>",
                    x(i),
                    y(lo),
                    y(hi),
                    y(m)
                );
            }
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = top + 20.0 * k as f64 + 10.0;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{}</text>",
            left + pw + 15.0,
            left + pw + 35.0,
            left + pw + 40.0,
            ly + 4.0,
            mode_label(mode)
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn main() {
    let o = parse_options();
    if let Err(e) = std::fs::create_dir_all(&o.out) {
        usage(&format!("{}: {e}", o.out.display()));
    }
    for path in [&o.boot, &o.kernel] {
        if !Path::new(path).exists() {
            usage(&format!("{} does not exist", path.display()));
        }
    }
    let benches = benchmarks(o.quick);
    let modes = modes(&o);
    let total = benches.len() * o.cpus.len() * modes.len() * o.runs;
    let started = Instant::now();
    let mut samples: Samples = BTreeMap::new();
    let mut failures = Vec::new();
    let mut done = 0;
    eprintln!(
        "bench: {total} boots ({} benchmarks x CPUs {:?} x {:?} x {} runs){}",
        benches.len(),
        o.cpus,
        modes,
        o.runs,
        if o.quick { ", quick" } else { "" }
    );
    for run in 1..=o.runs {
        for b in &benches {
            for &cpus in &o.cpus {
                for mode in &modes {
                    let left = if done == 0 {
                        "?".to_string()
                    } else {
                        fmt_duration(started.elapsed() / done as u32 * (total - done) as u32)
                    };
                    eprintln!(
                        "bench: [{}/{total}] {} on {cpus} CPUs, {}, run {run}/{}; {} elapsed, about {left} left",
                        done + 1,
                        b.name,
                        mode_label(mode),
                        o.runs,
                        fmt_duration(started.elapsed())
                    );
                    match run_once(&o, b, cpus, mode) {
                        Ok(out) => {
                            for m in &b.metrics {
                                match (m.parse)(&out, cpus) {
                                    Some(v) => samples
                                        .entry((b.name.to_string(), m.key.to_string()))
                                        .or_default()
                                        .entry((cpus, mode.to_string()))
                                        .or_default()
                                        .push(v),
                                    None => failures.push(format!(
                                        "{} run {run} on {cpus} CPUs ({mode}): no {} figure",
                                        b.name, m.key
                                    )),
                                }
                            }
                        }
                        Err(e) => failures.push(format!("{} run {run} on {cpus} CPUs ({mode}): {e}", b.name)),
                    }
                    done += 1;
                }
            }
        }
    }
    let wall = started.elapsed();
    let table = tables(&o, &benches, &samples);
    println!("{table}");
    let json_path = o.out.join("results.json");
    if let Err(e) = std::fs::write(&json_path, json(&o, &benches, &samples, wall)) {
        failures.push(format!("{}: {e}", json_path.display()));
    }
    let _ = std::fs::write(o.out.join("results.md"), &table);
    let mut plots = Vec::new();
    for b in &benches {
        for m in &b.metrics {
            if let Some(per) = samples.get(&(b.name.to_string(), m.key.to_string())) {
                let path = o.out.join(format!("{}_{}.svg", b.name, m.key));
                match std::fs::write(&path, svg(&o, m, per)) {
                    Ok(()) => plots.push(path.display().to_string()),
                    Err(e) => failures.push(format!("{}: {e}", path.display())),
                }
            }
        }
    }
    for f in o.out.read_dir().into_iter().flatten().flatten() {
        if f.file_name().to_string_lossy().starts_with("initrd-") {
            let _ = std::fs::remove_file(f.path());
        }
    }
    println!("bench: {} in {}; wrote {} and {}", total, fmt_duration(wall), json_path.display(), plots.join(", "));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("bench: FAILED: {f}");
        }
        std::process::exit(1);
    }
}
