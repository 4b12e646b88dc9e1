//! A self-contained HTML report (`--html FILE`): no scripts, no network, no external files; the
//! charts are inline SVG drawn with `plotters`.
//!
//! Per scenario: the verdict and reason; a timeline with one lane per peer (its four W3C state
//! machines as coloured spans, and a row of ticks for offer/answer, candidates, data-channel
//! opening and messages) on an axis in ms since the steps began, the end of the last step
//! marked by a vertical line; the metrics table; and with `--repeat`, a box plot of each phase per peer. For
//! `matrix`, a heat map of the median time to both connected.

use super::MetricSummary;
use crate::engine::{RunResult, Verdict};
use crate::matrix::Matrix;
use crate::metrics::NAMES;
use crate::timeline::{EventKind, StateMachine};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Colour of a state value: grey new, amber in progress, blue offer/answer pending, green
/// established, orange disconnected, red failed, dark grey closed.
pub fn state_color(state: &str) -> RGBColor {
    match state {
        "new" => RGBColor(0xd0, 0xd0, 0xd0),
        "connecting" | "checking" | "gathering" => RGBColor(0xf4, 0xb4, 0x00),
        "have-local-offer"
        | "have-remote-offer"
        | "have-local-pranswer"
        | "have-remote-pranswer" => RGBColor(0x7a, 0xa7, 0xf5),
        "connected" | "completed" | "complete" | "stable" => RGBColor(0x34, 0xa8, 0x53),
        "disconnected" => RGBColor(0xfb, 0x8c, 0x00),
        "failed" => RGBColor(0xd9, 0x30, 0x25),
        "closed" => RGBColor(0x5f, 0x63, 0x68),
        _ => RGBColor(0x99, 0x99, 0x99),
    }
}

fn tick_color(e: &EventKind) -> Option<RGBColor> {
    Some(match e {
        EventKind::CreateOffer | EventKind::OfferApplied | EventKind::AnswerApplied => BLACK,
        EventKind::LocalCandidate { .. } => RGBColor(0x8e, 0x24, 0xaa),
        EventKind::RemoteCandidate { .. } => RGBColor(0xce, 0x93, 0xd8),
        EventKind::DataChannelOpen { .. } => RGBColor(0x1b, 0x5e, 0x20),
        EventKind::MessageReceived { .. } | EventKind::MessagesSent { .. } => {
            RGBColor(0x15, 0x65, 0xc0)
        }
        EventKind::Error { .. } | EventKind::IceCandidateError { .. } => RGBColor(0xd9, 0x30, 0x25),
        EventKind::SelectedCandidatePair { .. } => RGBColor(0x00, 0x69, 0x5c),
        EventKind::TrackReceived { .. } | EventKind::FirstVideoFrame => RGBColor(0xef, 0x6c, 0x00),
        EventKind::SendStarted { .. } => RGBColor(0x15, 0x65, 0xc0),
        EventKind::Closed | EventKind::Killed | EventKind::Frozen => RGBColor(0x5f, 0x63, 0x68),
        EventKind::NetworkChanged { .. } | EventKind::SignalingClosed => RGBColor(0xd9, 0x30, 0x25),
        EventKind::SignalingJoined { .. } => BLACK,
        EventKind::MediaAtRecovery { .. } => RGBColor(0xef, 0x6c, 0x00),
        EventKind::Call { error: Some(_), .. } => RGBColor(0xd9, 0x30, 0x25),
        EventKind::Call { .. } | EventKind::Eval { .. } => RGBColor(0x5f, 0x63, 0x68),
        EventKind::Screenshot { .. } => RGBColor(0xd9, 0x30, 0x25),
        // Marks are drawn across every row (see `timeline_svg`).
        EventKind::State { .. } | EventKind::Mark { .. } => return None,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const ROWS_PER_PEER: u32 = 5;

/// The timeline chart of one run, as an SVG string.
pub fn timeline_svg(r: &RunResult) -> Result<String, String> {
    let peers: Vec<&str> = r.peers.iter().map(|p| p.id.as_str()).collect();
    let rows = (peers.len() as u32 * ROWS_PER_PEER).max(1);
    let last = r
        .timeline
        .events()
        .iter()
        .map(|e| e.t_ms)
        .fold(r.end_of_steps_ms, f64::max);
    let x_max = (last * 1.05).max(1.0);
    let mut labels = vec![String::new(); rows as usize];
    // Peer k occupies rows from the top; row 0 is at the bottom of the chart.
    let row_of = |k: usize, sub: u32| rows - 1 - (k as u32 * ROWS_PER_PEER + sub);
    for (k, p) in peers.iter().enumerate() {
        for (sub, m) in StateMachine::ALL.iter().enumerate() {
            labels[row_of(k, sub as u32) as usize] = format!("{p} {}", m.attribute());
        }
        labels[row_of(k, 4) as usize] = format!("{p} events");
    }
    let mut svg = String::new();
    {
        let height = 60 + rows * 22;
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(230)
            .build_cartesian_2d(0f64..x_max, (0u32..rows).into_segmented())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("ms since the steps began")
            .draw()
            .map_err(|e| e.to_string())?;
        let mut spans = Vec::new();
        let mut ticks = Vec::new();
        for (k, p) in peers.iter().enumerate() {
            for (sub, m) in StateMachine::ALL.iter().enumerate() {
                let states = r.timeline.peer_states(p, *m);
                for (i, (t, s)) in states.iter().enumerate() {
                    let end = states.get(i + 1).map(|(t2, _)| *t2).unwrap_or(x_max);
                    spans.push((row_of(k, sub as u32), t.max(0.0), end, state_color(s)));
                }
            }
            for e in r.timeline.of_peer(p) {
                if let Some(c) = tick_color(&e.event) {
                    ticks.push((row_of(k, 4), e.t_ms.max(0.0), c));
                }
            }
        }
        chart
            .draw_series(spans.iter().map(|(row, x0, x1, c)| {
                Rectangle::new(
                    [
                        (*x0, SegmentValue::Exact(*row)),
                        (*x1, SegmentValue::Exact(row + 1)),
                    ],
                    c.filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(ticks.iter().map(|(row, x, c)| {
                PathElement::new(
                    vec![
                        (*x, SegmentValue::Exact(*row)),
                        (*x, SegmentValue::Exact(row + 1)),
                    ],
                    c.stroke_width(1),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (r.end_of_steps_ms, SegmentValue::Exact(0)),
                    (r.end_of_steps_ms, SegmentValue::Exact(rows)),
                ],
                BLACK.stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
        // `mark` steps: a line across every row, named at the top.
        let mark_color = RGBColor(0x6a, 0x1b, 0x9a);
        for (t, name) in r.timeline.marks() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (t.max(0.0), SegmentValue::Exact(0)),
                        (t.max(0.0), SegmentValue::Exact(rows)),
                    ],
                    mark_color.stroke_width(2),
                )))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    (t.max(0.0), SegmentValue::Exact(rows)),
                    ("sans-serif", 12).into_font().color(&mark_color),
                )))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Box plots of every phase with at least two values, per peer, over the repetitions.
pub fn distribution_svg(runs: &[&RunResult]) -> Result<Option<String>, String> {
    let mut series: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for r in runs {
        for (peer, m) in &r.metrics {
            for (i, name) in NAMES.iter().enumerate() {
                if let Some(v) = m.get(name) {
                    series.entry((peer.clone(), i)).or_default().push(v);
                }
            }
        }
    }
    series.retain(|_, v| v.len() >= 2);
    if series.is_empty() {
        return Ok(None);
    }
    let entries: Vec<(String, Vec<f64>)> = series
        .into_iter()
        .map(|((peer, i), v)| (format!("{peer} {}", NAMES[i]), v))
        .collect();
    let n = entries.len() as u32;
    let x_max = entries
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0, f64::max) as f32
        * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 60 + n * 26)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(230)
            .build_cartesian_2d(0f32..x_max, (0u32..n).into_segmented())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => n
                    .checked_sub(1 + *i)
                    .and_then(|k| entries.get(k as usize))
                    .map(|(l, _)| l.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("ms")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(entries.iter().enumerate().map(|(i, (_, v))| {
                Boxplot::new_horizontal(
                    SegmentValue::CenterOf(n - 1 - i as u32),
                    &Quartiles::new(v),
                )
                .width(14)
                .style(RGBColor(0x15, 0x65, 0xc0))
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

/// The matrix heat map: green fast, red slow (log scale), grey failed.
pub fn matrix_svg(m: &Matrix) -> Result<String, String> {
    let n = m.kinds.len() as u32;
    let times: Vec<f64> = m.cells.iter().filter_map(|c| c.median_setup_ms).collect();
    let lo = times
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(0.1)
        .ln();
    let hi = times.iter().copied().fold(0.1, f64::max).ln();
    let mut svg = String::new();
    {
        let size = 140 + n * 120;
        let root = SVGBackend::with_string(&mut svg, (size, size)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let names: Vec<&str> = m.kinds.iter().map(|k| k.as_str()).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d((0u32..n).into_segmented(), (0u32..n).into_segmented())
            .map_err(|e| e.to_string())?;
        let fmt = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => names
                .get(*i as usize)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let fmt_y = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => n
                .checked_sub(1 + *i)
                .and_then(|k| names.get(k as usize))
                .map(|s| s.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n as usize)
            .y_labels(n as usize)
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt_y)
            .x_desc("answerer")
            .y_desc("offerer")
            .draw()
            .map_err(|e| e.to_string())?;
        for c in &m.cells {
            let (Some(x), Some(oy)) = (
                m.kinds.iter().position(|k| *k == c.answerer),
                m.kinds.iter().position(|k| *k == c.offerer),
            ) else {
                continue;
            };
            let (x, y) = (x as u32, n - 1 - oy as u32);
            let color = match (c.ok(), c.median_setup_ms) {
                (true, Some(t)) => {
                    let f = if hi > lo {
                        ((t.max(0.1).ln() - lo) / (hi - lo)).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    RGBColor((80.0 + 175.0 * f) as u8, (200.0 - 140.0 * f) as u8, 90)
                }
                _ => RGBColor(0x9e, 0x9e, 0x9e),
            };
            let label = match (c.ok(), c.median_setup_ms) {
                (true, Some(t)) => format!("{t:.1} ms"),
                (true, None) => "pass".into(),
                (false, _) => format!("FAIL {}/{}", c.runs - c.passed, c.runs),
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                )))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    ("sans-serif", 16).into_font().color(&BLACK),
                )))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

const STYLE: &str = "body{font-family:sans-serif;margin:20px;color:#202124}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-top:1px solid #ddd;padding-top:16px}\
.pass{color:#1e8e3e}.fail{color:#d93025}.setup-error{color:#e37400}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}\
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:14px;height:10px;margin-right:4px}";

fn legend() -> String {
    let mut out = String::from("<div class=\"legend\">");
    for s in [
        "new",
        "connecting",
        "have-local-offer",
        "connected",
        "disconnected",
        "failed",
        "closed",
    ] {
        let c = state_color(s);
        let label = match s {
            "connecting" => "connecting / checking / gathering",
            "have-local-offer" => "have-local-offer / have-remote-offer",
            "connected" => "connected / completed / complete / stable",
            other => other,
        };
        out.push_str(&format!(
            "<span><i style=\"background:rgb({},{},{})\"></i>{label}</span>",
            c.0, c.1, c.2
        ));
    }
    out.push_str("<br>ticks: black offer/answer, purple local candidate, light purple remote candidate, dark green data channel open, blue messages, red error; the black vertical line marks the end of the last step</div>");
    out
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::SetupError => "setup-error",
    }
}

fn metrics_table(r: &RunResult) -> String {
    let mut out = String::from("<table class=\"metrics\"><tr><th>peer</th><th>product</th>");
    for n in NAMES {
        out.push_str(&format!("<th>{n}</th>"));
    }
    out.push_str("</tr>");
    for (p, key, m) in super::metric_rows(r) {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td>",
            esc(key),
            esc(&p.product)
        ));
        for n in NAMES {
            let v = m
                .get(n)
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!("<td>{v}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

fn marks(r: &RunResult) -> String {
    if r.marks.is_empty() {
        return String::new();
    }
    let items: String = r
        .marks
        .iter()
        .map(|m| format!("<li>{:.1} ms: <b>{}</b></li>", m.t_ms, esc(&m.name)))
        .collect();
    format!("<h3>Marks</h3><ul class=\"marks\">{items}</ul>")
}

fn explanations(r: &RunResult) -> String {
    let mut out = String::new();
    for (peer, lines) in &r.explanations {
        for l in lines {
            out.push_str(&format!("<li><b>{}</b>: {}</li>", esc(peer), esc(l)));
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("<h3>Where setup time went</h3><ul class=\"explain\">{out}</ul>")
    }
}

fn logs(r: &RunResult) -> String {
    let mut out = String::new();
    if let Some(l) = &r.logs {
        out.push_str(&format!(
            "<li>library log: {} line{}{}: <a href=\"file://{}\">{}</a>{}</li>",
            l.lines,
            if l.lines == 1 { "" } else { "s" },
            if l.lines > 0 {
                format!(" ({})", esc(&l.counts.describe()))
            } else {
                String::new()
            },
            esc(&l.file),
            esc(&l.file),
            l.error
                .as_ref()
                .map(|e| format!(" (incomplete: {})", esc(e)))
                .unwrap_or_default()
        ));
        for (peer, file) in &l.peer_files {
            let counts = l.by_peer.get(peer).copied().unwrap_or_default();
            out.push_str(&format!(
                "<li>{} library log: {}: <a href=\"file://{}\">{}</a></li>",
                esc(peer),
                esc(&counts.describe()),
                esc(file),
                esc(file)
            ));
        }
        for (peer, lines) in &l.last {
            out.push_str(&format!(
                "<li>{} last library ERROR/WARN lines:<pre>{}</pre></li>",
                esc(peer),
                esc(&lines.join("\n"))
            ));
        }
    }
    for p in &r.peers {
        match &p.driver_log {
            // A file of this machine: a link.
            Some(log) if log.starts_with('/') => out.push_str(&format!(
                "<li>{} driver log: <a href=\"file://{}\">{}</a></li>",
                esc(&p.id),
                esc(log),
                esc(log)
            )),
            // A browser on a remote WebDriver: where its log is, as text.
            Some(log) => out.push_str(&format!("<li>{} driver log: {}</li>", esc(&p.id), esc(log))),
            None => {}
        }
        if let Some(lines) = r.console.get(&p.id)
            && !lines.is_empty()
        {
            out.push_str(&format!(
                "<li>{} console:<pre>{}</pre></li>",
                esc(&p.id),
                esc(&lines.join("\n"))
            ));
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("<ul class=\"logs\">{out}</ul>")
    }
}

/// The whole report.
pub fn render(
    title: &str,
    runs: &[RunResult],
    summaries: &[MetricSummary],
    matrix: Option<&Matrix>,
) -> Result<String, String> {
    let mut body = format!("<h1>{}</h1>", esc(title));
    let totals = super::totals(runs);
    body.push_str(&format!(
        "<p class=\"totals\">{} passed, {} failed, {} setup errors</p>{}",
        totals.passed,
        totals.failed,
        totals.setup_errors,
        legend()
    ));
    if let Some(m) = matrix {
        body.push_str(&format!(
            "<h2 id=\"matrix\">Interop matrix: {}</h2><p>median ms from createOffer to both connected; rows offerer, columns answerer</p><div class=\"chart matrix\">{}</div>",
            esc(&m.template),
            matrix_svg(m)?
        ));
    }
    // Group repetitions of one scenario together, in first-seen order.
    let mut order: Vec<&str> = Vec::new();
    for r in runs {
        if !order.contains(&r.name.as_str()) {
            order.push(&r.name);
        }
    }
    for (i, name) in order.iter().enumerate() {
        let group: Vec<&RunResult> = runs.iter().filter(|r| r.name == *name).collect();
        let shown = group
            .iter()
            .find(|r| r.verdict != Verdict::Pass)
            .or(group.first())
            .copied();
        let Some(r) = shown else { continue };
        body.push_str(&format!(
            "<section class=\"scenario\" id=\"s{i}\"><h2>{} <span class=\"{}\">{}</span></h2><p>{} — run {} of {} shown</p>",
            esc(name),
            verdict_class(r.verdict),
            verdict_class(r.verdict).to_uppercase(),
            esc(&r.file),
            r.repetition,
            group.len()
        ));
        if let Some(reason) = &r.reason {
            body.push_str(&format!("<pre class=\"reason\">{}</pre>", esc(reason)));
        }
        body.push_str(&format!(
            "<div class=\"chart timeline\">{}</div>",
            timeline_svg(r)?
        ));
        body.push_str(&marks(r));
        body.push_str(&metrics_table(r));
        body.push_str(&explanations(r));
        if let Some(svg) = distribution_svg(&group)? {
            body.push_str(&format!(
                "<h3>Distribution over {} runs</h3><div class=\"chart distribution\">{svg}</div>",
                group.len()
            ));
        }
        let mine: Vec<&MetricSummary> = summaries.iter().filter(|s| s.scenario == *name).collect();
        if group.len() > 1 && !mine.is_empty() {
            body.push_str("<table class=\"percentiles\"><tr><th>peer</th><th>metric (ms)</th><th>n</th><th>min</th><th>median</th><th>p95</th><th>max</th></tr>");
            for s in mine {
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                    esc(&s.peer), s.metric, s.summary.n, s.summary.min, s.summary.median, s.summary.p95, s.summary.max
                ));
            }
            body.push_str("</table>");
        }
        body.push_str(&logs(r));
        body.push_str("</section>");
    }
    Ok(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}
