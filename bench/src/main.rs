//! `make bench`: boots the benchmark programs of `user/` on the release
//! kernel on 1, 2 and 4 CPUs, in both lock modes (`boot --lock vma|mmap`),
//! and optionally on Linux 6.12 (the same binaries as /init under the same
//! QEMU, as `linux-peer` runs them), several runs each. Prints progress and
//! tables of medians with min-max, writes `target/bench/results.json` and
//! one SVG plot per figure against the CPU count (drawn with plotters).
//! A boot on N CPUs runs N benchmark threads, one pinned to each CPU.
//!
//! Usage: `bench --boot BOOT --kernel KERNEL [--user DIR] [--out DIR]
//! [--quick] [--runs N] [--cpus 1,2,4] [--linux VMLINUZ]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One figure a benchmark prints: the number after `before` on the first
/// line of the output that contains `line` (both with `{cpus}` standing for
/// the CPU count of the boot).
struct Metric {
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    /// Larger is better (rates) or smaller (costs).
    higher_is_better: bool,
    line: &'static str,
    before: &'static str,
    /// A figure not every kernel prints (Linux has no IPI counter): its
    /// absence is no failure.
    optional: bool,
}

struct Benchmark {
    name: &'static str,
    program: &'static str,
    /// The program's arguments for a boot on `cpus` CPUs (quick or not).
    args: fn(quick: bool, cpus: u32) -> Vec<String>,
    metrics: Vec<Metric>,
    /// Runs on the first CPU count only: its figure is a single thread's,
    /// and each boot costs seconds.
    first_cpus_only: bool,
}

impl Benchmark {
    fn cpus<'a>(&self, o: &'a Options) -> &'a [u32] {
        if self.first_cpus_only {
            &o.cpus[..1]
        } else {
            &o.cpus
        }
    }
}

impl Metric {
    fn parse(&self, out: &str, cpus: u32) -> Option<f64> {
        let line = self.line.replace("{cpus}", &cpus.to_string());
        let before = self.before.replace("{cpus}", &cpus.to_string());
        out.lines().filter(|l| l.contains(&line)).find_map(|l| number_after(l, &before))
    }
}

/// The number right after `prefix` in `line` (digits and one dot).
fn number_after(line: &str, prefix: &str) -> Option<f64> {
    let at = line.find(prefix)? + prefix.len();
    let digits: String = line[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().ok()
}

/// A rate or cost metric of a program printing `program: case: {cpus} threads: X`.
fn per_thread_count(key: &'static str, title: &'static str, line: &'static str) -> Metric {
    Metric { key, title, unit: "pages/Mtick", higher_is_better: true, line, before: line, optional: false }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn benchmarks() -> Vec<Benchmark> {
    let storm = |key, title, unit, before| Metric {
        key,
        title,
        unit,
        higher_is_better: true,
        line: "fault_storm: median of",
        before,
        optional: false,
    };
    let latency = |key, title, before| Metric {
        key,
        title,
        unit: "TSC cycles",
        higher_is_better: false,
        line: "fault_bench: latency: min",
        before,
        optional: false,
    };
    vec![
        Benchmark {
            name: "fault_storm",
            first_cpus_only: false,
            program: "fault_storm",
            // ROUNDS and REPS: one repetition a boot, the runs are the samples.
            args: |quick, _| strings(if quick { &["100", "1"] } else { &["400", "1"] }),
            metrics: vec![
                storm("alone", "fault_storm: faults alone", "faults/Mtick", "alone "),
                storm("storm", "fault_storm: faults during the mmap/munmap storm", "faults/Mtick", "storm "),
                storm("keeps", "fault_storm: storm rate as % of alone", "%", "keeps "),
            ],
        },
        Benchmark {
            name: "fault_scale",
            first_cpus_only: false,
            program: "fault_scale",
            // N threads (= CPUs) only, and the milliseconds of each case.
            args: |quick, cpus| {
                vec![cpus.to_string(), cpus.to_string(), if quick { "250" } else { "1000" }.to_string()]
            },
            metrics: vec![
                per_thread_count(
                    "own_map",
                    "fault_scale: map, touch, unmap 512 pages, each thread its own (aggregate)",
                    "fault_scale: own_map: {cpus} threads: ",
                ),
                per_thread_count(
                    "own_dontneed",
                    "fault_scale: touch + MADV_DONTNEED, each thread its own mapping (aggregate)",
                    "fault_scale: own_dontneed: {cpus} threads: ",
                ),
                per_thread_count(
                    "shared_dontneed",
                    "fault_scale: touch + MADV_DONTNEED, all threads on one mapping (aggregate)",
                    "fault_scale: shared_dontneed: {cpus} threads: ",
                ),
            ],
        },
        Benchmark {
            name: "mapbench",
            first_cpus_only: false,
            program: "mapbench",
            args: |quick, cpus| {
                vec![cpus.to_string(), cpus.to_string(), if quick { "250" } else { "1000" }.to_string()]
            },
            metrics: vec![
                per_thread_count(
                    "local",
                    "mapbench local: each CPU maps, touches, unmaps its own regions",
                    "mapbench: local: {cpus} threads: ",
                ),
                per_thread_count(
                    "pipeline",
                    "mapbench pipeline: mapped on CPU i, unmapped on CPU i+1",
                    "mapbench: pipeline: {cpus} threads: ",
                ),
                per_thread_count(
                    "global",
                    "mapbench global: all CPUs fault one region, one CPU unmaps",
                    "mapbench: global: {cpus} threads: ",
                ),
            ],
        },
        Benchmark {
            name: "unmap_cost",
            first_cpus_only: false,
            program: "unmap_cost",
            // Spinners on every CPU but one: the boot's own CPU count.
            args: |_, cpus| vec![cpus.to_string()],
            metrics: vec![
                Metric {
                    key: "shootdown",
                    title: "unmap_cost: one-page munmap, space loaded on every CPU",
                    unit: "TSC cycles",
                    higher_is_better: false,
                    line: "one-page munmap with the space on {cpus} CPUs: median ",
                    before: "median ",
                    optional: false,
                },
                Metric {
                    key: "ipis",
                    title: "unmap_cost: TLB IPIs per one-page munmap (ours: /proc/vmstat tlb_ipis)",
                    unit: "IPIs",
                    higher_is_better: false,
                    line: "one-page munmap with the space on {cpus} CPUs: ",
                    before: "CPUs: ",
                    optional: true,
                },
                Metric {
                    key: "untouched",
                    title: "unmap_cost: mmap + munmap of 128 MiB, untouched",
                    unit: "TSC cycles",
                    higher_is_better: false,
                    line: "untouched 128 MiB mmap+munmap: median ",
                    before: "median ",
                    optional: false,
                },
                Metric {
                    key: "touched",
                    title: "unmap_cost: map, touch, unmap 128 MiB",
                    unit: "pages/Mtick",
                    higher_is_better: true,
                    line: "map/touch/unmap: ",
                    before: "map/touch/unmap: ",
                    optional: false,
                },
            ],
        },
        Benchmark {
            name: "fault_latency",
            program: "fault_bench",
            args: |_, _| strings(&["latency"]),
            first_cpus_only: true,
            metrics: vec![
                latency("min", "fault latency: first write to a fresh page, minimum", "min "),
                latency("median", "fault latency: first write to a fresh page, median", "median "),
                latency("p99", "fault latency: first write to a fresh page, 99th percentile", "p99 "),
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
    let args = (bench.args)(o.quick, cpus);
    let output = if mode == "linux" {
        // As linux-peer runs a program: Debian's 6.12 cloud kernel, the
        // program alone as /init, the machine's default QEMU CPU, 1 GiB.
        let data = std::fs::read(&program).map_err(|e| format!("{}: {e}", program.display()))?;
        let initrd = o.out.join(format!("initrd-{}.cpio", bench.program));
        std::fs::write(&initrd, cpio_with_init(&data)).map_err(|e| format!("{}: {e}", initrd.display()))?;
        let mut append = String::from("console=ttyS0 quiet panic=-1");
        if !args.is_empty() {
            append.push_str(" --");
            for a in &args {
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
        for a in &args {
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
            for &cpus in b.cpus(o) {
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

fn json(o: &Options, benches: &[Benchmark], samples: &Samples, wall: Duration, unpinned: &[String]) -> String {
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
    let list: Vec<String> = unpinned.iter().map(|u| json_string(u)).collect();
    let _ = writeln!(out, "  \"unpinned\": [{}],", list.join(", "));
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
                    json_string(&(b.args)(o.quick, *cpus).join(" ")),
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

/// A line chart of one metric against the CPU count, drawn with plotters:
/// one line per mode through the medians, a bar from min to max at each.
/// Cycle counts get a logarithmic axis: a vCPU waiting for host time makes
/// one run's cost a thousand times another's.
fn plot(path: &Path, o: &Options, metric: &Metric, per: &BTreeMap<(u32, String), Vec<f64>>) -> Result<(), String> {
    use plotters::prelude::*;
    let values = || per.values().flatten().copied();
    let ymax = values().fold(0.0f64, f64::max);
    if metric.unit == "TSC cycles" {
        let ymin = values().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let ymin = if ymin.is_finite() { ymin / 2.0 } else { 1.0 };
        draw(path, o, metric, per, (ymin..(ymax * 2.0).max(ymin * 4.0)).log_scale(), ", log scale")
    } else {
        let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
        draw(path, o, metric, per, 0.0f64..ymax, "")
    }
}

fn draw<Y>(
    path: &Path,
    o: &Options,
    metric: &Metric,
    per: &BTreeMap<(u32, String), Vec<f64>>,
    y: Y,
    scale: &str,
) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Debug| format!("{}: {e:?}", path.display());
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let xmax = o.cpus.iter().copied().max().unwrap_or(1);
    let better = if metric.higher_is_better { "higher is better" } else { "lower is better" };
    let mut chart = ChartBuilder::on(&root)
        .caption(metric.title, ("sans-serif", 15))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0u32..xmax + 1, y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("CPUs (one thread per CPU); dots: medians, bars: min-max")
        .y_desc(format!("{} ({better}{scale})", metric.unit))
        .x_labels(xmax as usize + 2)
        .x_label_formatter(&|&v| if v == 0 || v > xmax { String::new() } else { v.to_string() })
        .y_label_formatter(&|v| fmt_value(*v))
        .draw()
        .map_err(|e| err(&e))?;
    for mode in modes(o) {
        let colour = match mode {
            "vma" => RGBColor(31, 119, 180),
            "mmap" => RGBColor(214, 39, 40),
            _ => RGBColor(44, 160, 44),
        };
        let points: Vec<(u32, f64, f64, f64)> = o
            .cpus
            .iter()
            .filter_map(|&c| {
                let (m, lo, hi) = median_min_max(per.get(&(c, mode.to_string()))?)?;
                Some((c, m, lo, hi))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(mode_label(mode))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&(x, m, lo, hi)| ErrorBar::new_vertical(x, lo, m, hi, colour.filled(), 8)))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// The two plots the README shows, under names of their own: fault rate
/// and shootdown cost against CPUs.
const HEADLINE_PLOTS: [(&str, &str, &str); 2] =
    [("fault_rate.svg", "fault_scale", "own_dontneed"), ("shootdown.svg", "unmap_cost", "shootdown")];

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
    let benches = benchmarks();
    let modes = modes(&o);
    let total = benches.iter().map(|b| b.cpus(&o).len()).sum::<usize>() * modes.len() * o.runs;
    let started = Instant::now();
    let mut samples: Samples = BTreeMap::new();
    let mut failures = Vec::new();
    let mut unpinned = std::collections::BTreeSet::new();
    // Seconds of boots per benchmark, to say where the time goes.
    let mut boot_seconds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut mode_seconds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut done = 0;
    eprintln!(
        "bench: {total} boots ({} benchmarks x CPUs {:?} (fault_latency: the first only) x {:?} x {} runs){}",
        benches.len(),
        o.cpus,
        modes,
        o.runs,
        if o.quick { ", quick" } else { "" }
    );
    for run in 1..=o.runs {
        for b in &benches {
            for &cpus in b.cpus(&o) {
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
                    let boot_started = Instant::now();
                    let result = run_once(&o, b, cpus, mode);
                    // Each boot's console, to see why a figure is missing.
                    let log = o.out.join("logs").join(format!("{}-{cpus}cpus-{mode}-run{run}.log", b.name));
                    let _ = std::fs::create_dir_all(o.out.join("logs"));
                    let _ = std::fs::write(&log, result.as_deref().unwrap_or_else(|e| e.as_str()));
                    let took = boot_started.elapsed().as_secs();
                    *boot_seconds.entry(b.name).or_insert(0) += took;
                    *mode_seconds.entry(mode_label(mode)).or_insert(0) += took;
                    match result {
                        Ok(out) => {
                            if out.contains("sched_setaffinity failed") {
                                unpinned.insert(format!("{} ({})", b.name, mode_label(mode)));
                            }
                            for m in &b.metrics {
                                match m.parse(&out, cpus) {
                                    Some(v) => samples
                                        .entry((b.name.to_string(), m.key.to_string()))
                                        .or_default()
                                        .entry((cpus, mode.to_string()))
                                        .or_default()
                                        .push(v),
                                    None if m.optional => {}
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
    let unpinned: Vec<String> = unpinned.into_iter().collect();
    let mut table = tables(&o, &benches, &samples);
    if !unpinned.is_empty() {
        let _ =
            writeln!(table, "\ninfo: sched_setaffinity failed, so threads ran unpinned, in: {}", unpinned.join(", "));
    }
    println!("{table}");
    let json_path = o.out.join("results.json");
    if let Err(e) = std::fs::write(&json_path, json(&o, &benches, &samples, wall, &unpinned)) {
        failures.push(format!("{}: {e}", json_path.display()));
    }
    let _ = std::fs::write(o.out.join("results.md"), &table);
    let mut plots = Vec::new();
    for b in &benches {
        for m in &b.metrics {
            let Some(per) = samples.get(&(b.name.to_string(), m.key.to_string())) else { continue };
            let mut names = vec![format!("{}_{}.svg", b.name, m.key)];
            names.extend(HEADLINE_PLOTS.iter().filter(|h| (h.1, h.2) == (b.name, m.key)).map(|h| h.0.to_string()));
            for name in names {
                let path = o.out.join(name);
                match plot(&path, &o, m, per) {
                    Ok(()) => plots.push(path.display().to_string()),
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    for f in o.out.read_dir().into_iter().flatten().flatten() {
        if f.file_name().to_string_lossy().starts_with("initrd-") {
            let _ = std::fs::remove_file(f.path());
        }
    }
    let spent: Vec<String> = boot_seconds.iter().map(|(b, s)| format!("{b} {s}s")).collect();
    let per_mode: Vec<String> = mode_seconds.iter().map(|(m, s)| format!("{m} {s}s")).collect();
    eprintln!("bench: boot time per benchmark: {}; per mode: {}", spent.join(", "), per_mode.join(", "));
    println!(
        "bench: {} boots in {}; wrote {} and {} plots in {}",
        total,
        fmt_duration(wall),
        json_path.display(),
        plots.len(),
        o.out.display()
    );
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("bench: FAILED: {f}");
        }
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(linux: bool) -> Options {
        Options {
            boot: PathBuf::new(),
            kernel: PathBuf::new(),
            user: PathBuf::new(),
            out: PathBuf::new(),
            quick: false,
            runs: 3,
            cpus: vec![1, 2, 4],
            linux: linux.then(PathBuf::new),
        }
    }

    #[test]
    fn every_metric_parses_from_the_lines_its_program_prints() {
        let out = "\
fault_storm: median of 3: alone 80.5 faults/Mtick (70.1-90.2), storm 60.0 faults/Mtick (50.0-70.0), keeps 74.5% (70.0-80.0%)
info: fault_scale: own_map: 2 threads: 12.5 pages/Mtick
info: fault_scale: own_map: 4 threads: 22.5 pages/Mtick
info: fault_scale: own_dontneed: 4 threads: 30.0 pages/Mtick
info: fault_scale: shared_dontneed: 4 threads: 31.0 pages/Mtick
info: mapbench: local: 4 threads: 5.5 pages/Mtick
info: mapbench: pipeline: 4 threads: 4.5 pages/Mtick
info: mapbench: global: 4 threads: 3.5 pages/Mtick
info: untouched 128 MiB mmap+munmap: median 7098 TSC cycles
info: touched 128 MiB map/touch/unmap: 109.432 pages per million TSC ticks (3 rounds)
info: one-page munmap with the space on 1 CPUs: median 5382 TSC cycles
info: one-page munmap with the space on 4 CPUs: median 95000 TSC cycles
info: one-page munmap with the space on 4 CPUs: 3.00 IPIs per munmap
fault_bench: latency: min 2574 median 2756 p99 10062 cycles (49152 samples)
";
        let mut got = Vec::new();
        for b in benchmarks() {
            for m in &b.metrics {
                got.push((b.name, m.key, m.parse(out, 4)));
            }
        }
        let want = [
            ("fault_storm", "alone", 80.5),
            ("fault_storm", "storm", 60.0),
            ("fault_storm", "keeps", 74.5),
            ("fault_scale", "own_map", 22.5),
            ("fault_scale", "own_dontneed", 30.0),
            ("fault_scale", "shared_dontneed", 31.0),
            ("mapbench", "local", 5.5),
            ("mapbench", "pipeline", 4.5),
            ("mapbench", "global", 3.5),
            ("unmap_cost", "shootdown", 95000.0),
            ("unmap_cost", "ipis", 3.0),
            ("unmap_cost", "untouched", 7098.0),
            ("unmap_cost", "touched", 109.432),
            ("fault_latency", "min", 2574.0),
            ("fault_latency", "median", 2756.0),
            ("fault_latency", "p99", 10062.0),
        ];
        let want: Vec<_> = want.iter().map(|&(b, m, v)| (b, m, Some(v))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_missing_ipi_line_is_no_figure() {
        let b = benchmarks().into_iter().find(|b| b.name == "unmap_cost").expect("unmap_cost");
        let ipis = b.metrics.iter().find(|m| m.key == "ipis").expect("ipis");
        let out = "info: one-page munmap with the space on 2 CPUs: median 5434 TSC cycles\n";
        assert_eq!(ipis.parse(out, 2), None);
        assert!(ipis.optional);
    }

    #[test]
    fn plots_have_a_line_and_a_legend_entry_per_mode() {
        let o = options(true);
        let b = benchmarks().into_iter().find(|b| b.name == "fault_scale").expect("fault_scale");
        let mut per = BTreeMap::new();
        for (k, mode) in ["vma", "mmap", "linux"].into_iter().enumerate() {
            for cpus in [1u32, 2, 4] {
                let base = 40.0 * cpus as f64 / (k + 1) as f64;
                per.insert((cpus, mode.to_string()), vec![base * 0.9, base, base * 1.1]);
            }
        }
        let dir = std::env::temp_dir().join(format!("bench-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("plot.svg");
        plot(&path, &o, &b.metrics[1], &per).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read the plot");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.starts_with("<svg"));
        for label in ["per-VMA locks", "mmap_lock", "Linux 6.12", "CPUs", b.metrics[1].title] {
            assert!(svg.contains(label), "no {label:?} in the plot");
        }
        for colour in ["#1F77B4", "#D62728", "#2CA02C"] {
            assert!(
                svg.contains(&format!("<polyline fill=\"none\" opacity=\"1\" stroke=\"{colour}\" stroke-width=\"2\"")),
                "no line in {colour}"
            );
        }
        if let Some(keep) = std::env::var_os("BENCH_PLOT_SAMPLE") {
            let _ = std::fs::write(keep, &svg);
        }
    }

    #[test]
    fn cycle_plots_span_a_thousandfold_range_on_a_log_axis() {
        let o = options(false);
        let b = benchmarks().into_iter().find(|b| b.name == "unmap_cost").expect("unmap_cost");
        let mut per = BTreeMap::new();
        for (cpus, v) in [(1u32, 30_000.0), (2, 130_000.0), (4, 27_000_000.0)] {
            per.insert((cpus, "vma".to_string()), vec![v * 0.8, v, v * 1.5]);
            per.insert((cpus, "mmap".to_string()), vec![v / 2.0]);
        }
        let dir = std::env::temp_dir().join(format!("bench-log-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("plot.svg");
        plot(&path, &o, &b.metrics[0], &per).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read the plot");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.contains("TSC cycles (lower is better, log scale)"));
        if let Some(keep) = std::env::var_os("BENCH_LOG_PLOT_SAMPLE") {
            let _ = std::fs::write(keep, &svg);
        }
    }

    #[test]
    fn json_holds_every_sample_with_its_mode_and_cpus() {
        let o = options(false);
        let benches = benchmarks();
        let mut samples: Samples = BTreeMap::new();
        samples
            .entry(("unmap_cost".into(), "shootdown".into()))
            .or_default()
            .insert((2, "mmap".into()), vec![3.0, 1.0, 2.0]);
        let j = json(&o, &benches, &samples, Duration::from_secs(5), &["mapbench (mmap_lock)".to_string()]);
        assert!(j.contains("\"lock_mode\": \"mmap\""));
        assert!(j.contains("\"cpus\": 2"));
        assert!(j.contains("\"median\": 2, \"min\": 1, \"max\": 3, \"values\": [3, 1, 2]"));
        assert!(j.contains("\"args\": \"2\""), "unmap_cost's argument is the CPU count");
        assert!(j.contains("\"unpinned\": [\"mapbench (mmap_lock)\"]"));
        assert!(j.contains("\"git_commit\""));
        assert!(j.contains("\"date\""));
    }
}
