//! The frame every chart is drawn in: a title, a legend that wraps, the plot area with
//! grid lines and tick labels, both axis labels, notes under it, a clip path. Pure.

use std::fmt::Write;

use crate::util::html::escape;

pub const WIDTH: f64 = 560.0;
pub const RIGHT: f64 = 16.0;

/// What a legend entry looks like.
#[derive(Clone, Copy)]
pub enum Mark {
    Line,
    Dashed,
    Band,
    DotAndWhisker,
}

pub struct Legend<'a> {
    pub color: &'a str,
    pub label: String,
    pub mark: Mark,
}

impl<'a> Legend<'a> {
    /// One line entry per (colour, name): the legend of a chart of one line per variant.
    pub fn lines(lines: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Legend<'a>> {
        lines
            .into_iter()
            .map(|(color, name)| Legend {
                color,
                label: name.to_string(),
                mark: Mark::Line,
            })
            .collect()
    }
}

/// A chart being drawn: `open` writes the title, the legend and the notes and places the
/// plot area (`left`, `top`, `bottom`); the chart adds ticks, marks and axis labels, then
/// `close`s it.
pub struct Frame {
    pub svg: String,
    pub left: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Frame {
    pub fn open(
        title: &str,
        legend: &[Legend],
        left: f64,
        plot_height: f64,
        notes: &[String],
    ) -> Frame {
        // Legend entries flow left to right and wrap (about 6.5 px per character).
        let mut rows: Vec<Vec<(f64, &Legend)>> = vec![Vec::new()];
        let mut x = 0.0;
        for entry in legend {
            let width = 26.0 + 6.5 * entry.label.chars().count() as f64 + 14.0;
            if x > 0.0 && x + width > WIDTH - 16.0 {
                rows.push(Vec::new());
                x = 0.0;
            }
            rows.last_mut().expect("a row").push((x, entry));
            x += width;
        }
        let legend_top = 36.0;
        let top = legend_top + 16.0 * rows.len() as f64 + 4.0;
        let bottom = top + plot_height;
        let height = bottom + 42.0 + 14.0 * notes.len() as f64;
        // Inline in HTML: the parser gives <svg> its namespace, no xmlns needed.
        let mut svg = format!(
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{title}"><title>{title}</title><text x="10" y="20" class="title">{title}</text>"#,
            title = escape(title)
        );
        for (r, row) in rows.iter().enumerate() {
            let y = legend_top + 16.0 * r as f64;
            for (x, entry) in row {
                let x = 10.0 + x;
                let color = entry.color;
                let mark = match entry.mark {
                    Mark::Line => format!(
                        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/>"#,
                        x + 20.0
                    ),
                    Mark::Dashed => format!(
                        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="1.5" stroke-dasharray="4 3"/>"#,
                        x + 20.0
                    ),
                    Mark::Band => format!(
                        r#"<rect x="{x}" y="{}" width="20" height="10" fill="{color}" fill-opacity="0.2"/>"#,
                        y - 5.0
                    ),
                    Mark::DotAndWhisker => format!(
                        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/><circle cx="{}" cy="{y}" r="4" fill="{color}"/>"#,
                        x + 20.0,
                        x + 10.0
                    ),
                };
                let _ = write!(
                    svg,
                    r#"{mark}<text x="{}" y="{}" class="legend">{}</text>"#,
                    x + 26.0,
                    y + 4.0,
                    escape(&entry.label)
                );
            }
        }
        for (i, note) in notes.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<text x="10" y="{}" class="note">{}</text>"#,
                bottom + 50.0 + 14.0 * i as f64,
                escape(note)
            );
        }
        Frame {
            svg,
            left,
            top,
            bottom,
        }
    }

    pub fn right(&self) -> f64 {
        WIDTH - RIGHT
    }

    /// The x-axis label, centred under the plot.
    pub fn x_label(&mut self, label: &str) {
        let _ = write!(
            self.svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
            (self.left + self.right()) / 2.0,
            self.bottom + 34.0,
            escape(label)
        );
    }

    /// The y-axis label, rotated, centred beside the plot.
    pub fn y_label(&mut self, label: &str) {
        let y = (self.top + self.bottom) / 2.0;
        let _ = write!(
            self.svg,
            r#"<text x="14" y="{y:.1}" transform="rotate(-90 14 {y:.1})" text-anchor="middle" class="axis">{}</text>"#,
            escape(label)
        );
    }

    /// Horizontal grid lines with their labels on the left.
    pub fn y_ticks(
        &mut self,
        values: &[f64],
        y: &dyn Fn(f64) -> f64,
        label: &dyn Fn(f64) -> String,
    ) {
        for &v in values {
            let _ = write!(
                self.svg,
                r#"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" class="grid"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tick">{text}</text>"#,
                l = self.left,
                r = self.right(),
                y = y(v),
                tx = self.left - 6.0,
                ty = y(v) + 4.0,
                text = escape(&label(v)),
            );
        }
    }

    /// Vertical grid lines with their labels under the plot.
    pub fn x_ticks(
        &mut self,
        values: &[f64],
        x: &dyn Fn(f64) -> f64,
        label: &dyn Fn(f64) -> String,
    ) {
        for &v in values {
            let _ = write!(
                self.svg,
                r#"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{b}" class="grid"/><text x="{x:.1}" y="{ty}" text-anchor="middle" class="tick">{text}</text>"#,
                x = x(v),
                t = self.top,
                b = self.bottom,
                ty = self.bottom + 16.0,
                text = escape(&label(v)),
            );
        }
    }

    /// A clip path of the plot area, for marks that may run past the axis.
    pub fn clip(&mut self, id: &str) {
        let _ = write!(
            self.svg,
            r#"<clipPath id="{id}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath>"#,
            self.left,
            self.top,
            self.right() - self.left,
            self.bottom - self.top
        );
    }

    pub fn message(&mut self, text: &str) {
        let _ = write!(
            self.svg,
            r#"<rect x="{l}" y="{t}" width="{w}" height="{h}" class="empty"/><text x="{cx:.1}" y="{cy:.1}" text-anchor="middle" class="axis">{text}</text>"#,
            l = self.left,
            t = self.top,
            w = self.right() - self.left,
            h = self.bottom - self.top,
            cx = (self.left + self.right()) / 2.0,
            cy = (self.top + self.bottom) / 2.0,
            text = escape(text),
        );
    }

    pub fn close(mut self) -> String {
        self.svg.push_str("</svg>");
        self.svg
    }
}
