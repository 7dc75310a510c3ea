//! The audit report as a PDF: A4 pages laid out here (headings, wrapped paragraphs, lists, the
//! ✓/✗ items, a footer with page numbers, bookmarks per section) and written by krilla with
//! DejaVu Sans embedded and subsetted. DejaVu Sans has ✓ and ✗, and krilla writes a ToUnicode
//! map for every glyph it draws, so the text can be selected, searched and read back by
//! `pdftotext` exactly as the HTML says it.
//!
//! The layout is deliberately simple: one column, text that wraps at word boundaries (a word
//! wider than the column, such as a long path, breaks between characters), blocks that do not
//! fit go to the next page, and a heading is never left alone at the bottom of a page.

use krilla::color::rgb;
use krilla::destination::XyzDestination;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::outline::{Outline, OutlineNode};
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, Stroke};
use krilla::text::{Font, TextDirection};
use krilla::{Data, Document};
use postwarden_server_domain::audit::{AuditReport, Mark};
use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, MetadataProvider};

use super::{priority_heading, ReportError, SECTIONS};

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// A4 in points, and the margins of the print CSS (20 mm, 18 mm; 22 mm at the bottom for the
/// footer).
const PAGE_W: f32 = 595.276;
const PAGE_H: f32 = 841.89;
const LEFT: f32 = 56.693;
const RIGHT: f32 = PAGE_W - 51.024;
const TOP: f32 = 56.693;
const BOTTOM: f32 = PAGE_H - 62.362;
const WIDTH: f32 = RIGHT - LEFT;

const TITLE: f32 = 20.0;
const H2: f32 = 13.5;
const H3: f32 = 11.0;
const BODY: f32 = 9.5;
const SMALL: f32 = 8.0;
const LEADING: f32 = 1.35;
/// Where text starts after a bullet, a number or a mark.
const HANG: f32 = 14.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    Regular,
    Bold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rgb(u8, u8, u8);

const INK: Rgb = Rgb(17, 17, 17);
const MUTED: Rgb = Rgb(85, 85, 85);
const RULE: Rgb = Rgb(190, 190, 190);
const PASS: Rgb = Rgb(26, 127, 55);
const FAIL: Rgb = Rgb(180, 35, 24);

/// What goes on a page, in page coordinates (origin top left, y down; `y` of text is its
/// baseline).
#[derive(Debug, Clone)]
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        weight: Weight,
        color: Rgb,
        text: String,
    },
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
        width: f32,
    },
}

/// Advance widths of one face, for line breaking (no kerning: a line measured this way is never
/// narrower than krilla draws it).
struct Face {
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
}

impl Face {
    fn new(data: &'static [u8]) -> Result<Face, ReportError> {
        let font = FontRef::new(data)
            .map_err(|e| ReportError::Render("PDF", format!("reading the font: {e}")))?;
        Ok(Face {
            charmap: font.charmap(),
            // At 1 pixel per em the advances are in ems.
            metrics: font.glyph_metrics(Size::new(1.0), LocationRef::default()),
        })
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| {
                self.charmap
                    .map(c)
                    .and_then(|g| self.metrics.advance_width(g))
                    .unwrap_or(0.6)
            })
            .sum::<f32>()
            * size
    }
}

struct Layout {
    regular: Face,
    bold: Face,
    pages: Vec<Vec<Op>>,
    y: f32,
    /// Section title, page, y.
    bookmarks: Vec<(String, usize, f32)>,
}

impl Layout {
    fn face(&self, weight: Weight) -> &Face {
        match weight {
            Weight::Regular => &self.regular,
            Weight::Bold => &self.bold,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    /// Starts a new page unless `height` fits below the current position.
    fn ensure(&mut self, height: f32) {
        if self.y + height > BOTTOM && self.y > TOP {
            self.new_page();
        }
    }

    /// Vertical space, dropped at the top of a page.
    fn gap(&mut self, height: f32) {
        if self.y > TOP {
            self.y += height;
        }
    }

    /// `text` broken into lines at most `width` wide.
    fn wrap(&self, text: &str, size: f32, weight: Weight, width: f32) -> Vec<String> {
        let face = self.face(weight);
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let space = face.width(" ", size);
        let mut lines = Vec::new();
        let mut line = String::new();
        let mut used = 0.0;
        for word in clean.split(' ').filter(|w| !w.is_empty()) {
            let w = face.width(word, size);
            if !line.is_empty() && used + space + w <= width {
                line.push(' ');
                line.push_str(word);
                used += space + w;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                used = 0.0;
            }
            if w <= width {
                line.push_str(word);
                used = w;
                continue;
            }
            // Wider than a line (a path, a registry key): broken between characters.
            for c in word.chars() {
                let cw = face.width(c.encode_utf8(&mut [0; 4]), size);
                if used + cw > width && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    used = 0.0;
                }
                line.push(c);
                used += cw;
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// A block of wrapped text at `x`, `width` wide; the first line's `lead` (a bullet, a number,
    /// a mark) hangs to the left of `x`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        lead: Option<(&str, Rgb)>,
        x: f32,
        width: f32,
        text: &str,
        size: f32,
        weight: Weight,
        color: Rgb,
    ) {
        let line_height = size * LEADING;
        let lines = self.wrap(text, size, weight, width);
        for (i, line) in lines.into_iter().enumerate() {
            self.ensure(line_height);
            let baseline = self.y + size;
            if i == 0 {
                if let Some((lead, lead_color)) = lead {
                    self.ops().push(Op::Text {
                        x: x - HANG,
                        y: baseline,
                        size,
                        weight: Weight::Bold,
                        color: lead_color,
                        text: lead.to_owned(),
                    });
                }
            }
            self.ops().push(Op::Text {
                x,
                y: baseline,
                size,
                weight,
                color,
                text: line,
            });
            self.y += line_height;
        }
    }

    fn paragraph(&mut self, text: &str) {
        self.block(None, LEFT, WIDTH, text, BODY, Weight::Regular, INK);
        self.gap(BODY * 0.5);
    }

    fn rule(&mut self) {
        self.ensure(8.0);
        self.y += 4.0;
        let y = self.y;
        self.ops().push(Op::Rule {
            x1: LEFT,
            x2: RIGHT,
            y,
            width: 0.6,
        });
        self.y += 6.0;
    }

    /// A section heading, kept with the first lines after it; `bookmark` adds it to the outline.
    fn heading(&mut self, text: &str, size: f32, bookmark: bool) {
        self.gap(size * 0.9);
        self.ensure(size * LEADING + 2.0 * BODY * LEADING);
        if bookmark {
            let page = self.pages.len().saturating_sub(1);
            self.bookmarks.push((text.to_owned(), page, self.y));
        }
        self.block(None, LEFT, WIDTH, text, size, Weight::Bold, INK);
        self.gap(size * 0.3);
    }
}

fn fill(color: Rgb) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::default(),
    }
}

/// The report as a PDF document.
pub fn render(r: &AuditReport) -> Result<Vec<u8>, ReportError> {
    let mut l = Layout {
        regular: Face::new(REGULAR)?,
        bold: Face::new(BOLD)?,
        pages: vec![Vec::new()],
        y: TOP,
        bookmarks: Vec::new(),
    };
    lay_out(r, &mut l);

    let regular = Font::new(Data::from(REGULAR), 0)
        .ok_or_else(|| ReportError::Render("PDF", "DejaVu Sans does not load".into()))?;
    let bold = Font::new(Data::from(BOLD), 0)
        .ok_or_else(|| ReportError::Render("PDF", "DejaVu Sans Bold does not load".into()))?;
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| ReportError::Render("PDF", "the page size".into()))?;
    let mut document = Document::new();
    let pages = l.pages.len();
    let footer_left = format!(
        "{} · Audit report · {} · {} {}",
        r.title.organisation, r.title.scope, r.title.moment_label, r.title.date
    );
    let footer_width = WIDTH - 70.0;
    let footer_left = l
        .wrap(&footer_left, SMALL, Weight::Regular, footer_width)
        .into_iter()
        .next()
        .unwrap_or_default();
    for (n, ops) in l.pages.iter().enumerate() {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        let number = format!("Page {} of {pages}", n + 1);
        let footer = [
            Op::Rule {
                x1: LEFT,
                x2: RIGHT,
                y: BOTTOM + 18.0,
                width: 0.4,
            },
            Op::Text {
                x: LEFT,
                y: BOTTOM + 30.0,
                size: SMALL,
                weight: Weight::Regular,
                color: MUTED,
                text: footer_left.clone(),
            },
            Op::Text {
                x: RIGHT - l.regular.width(&number, SMALL),
                y: BOTTOM + 30.0,
                size: SMALL,
                weight: Weight::Regular,
                color: MUTED,
                text: number,
            },
        ];
        for op in ops.iter().chain(footer.iter()) {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    weight,
                    color,
                    text,
                } => {
                    surface.set_stroke(None);
                    surface.set_fill(Some(fill(*color)));
                    let font = match weight {
                        Weight::Regular => regular.clone(),
                        Weight::Bold => bold.clone(),
                    };
                    surface.draw_text(
                        Point::from_xy(*x, *y),
                        font,
                        *size,
                        text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rule { x1, x2, y, width } => {
                    let mut path = PathBuilder::new();
                    path.move_to(*x1, *y);
                    path.line_to(*x2, *y);
                    if let Some(path) = path.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            paint: rgb::Color::new(RULE.0, RULE.1, RULE.2).into(),
                            width: *width,
                            ..Stroke::default()
                        }));
                        surface.draw_path(&path);
                        surface.set_stroke(None);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    let mut outline = Outline::new();
    for (title, page, y) in &l.bookmarks {
        outline.push_child(OutlineNode::new(
            title.clone(),
            XyzDestination::new(*page, Point::from_xy(LEFT, *y)),
        ));
    }
    document.set_outline(outline);
    document.set_metadata(
        Metadata::new()
            .title(format!(
                "Audit report: {} — {}",
                r.title.organisation, r.title.scope
            ))
            .creator(format!("Postwarden {}", env!("CARGO_PKG_VERSION")))
            .language("en".to_owned()),
    );
    document
        .finish()
        .map_err(|e| ReportError::Render("PDF", format!("{e:?}")))
}

fn mark_color(mark: Mark) -> Rgb {
    match mark {
        Mark::Pass => PASS,
        Mark::Fail => FAIL,
        Mark::NotApplicable | Mark::NoData => MUTED,
    }
}

/// The report's content, in the order and with the words of the HTML template.
fn lay_out(r: &AuditReport, l: &mut Layout) {
    let t = &r.title;
    l.block(None, LEFT, WIDTH, "Audit report", TITLE, Weight::Bold, INK);
    l.block(
        None,
        LEFT,
        WIDTH,
        "Configuration of the mail clients (Thunderbird, Outlook, Apple Mail)",
        H3,
        Weight::Regular,
        MUTED,
    );
    l.gap(10.0);
    let devices = super::devices_line(t);
    let profiles = if t.profiles.is_empty() {
        vec!["no report was received".to_owned()]
    } else {
        t.profiles.clone()
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("Organisation", t.organisation.clone()),
        ("Scope", t.scope.clone()),
        (t.moment_label, t.date.clone()),
    ];
    for (i, p) in profiles.into_iter().enumerate() {
        rows.push((if i == 0 { "Profile" } else { "" }, p));
    }
    rows.push(("Devices", devices));
    rows.push(("Stale after", format!("{} without contact", t.stale_after)));
    rows.push(("Generated", t.generated.clone()));
    for (label, value) in rows {
        // The label sits on the first line of its value.
        l.ensure(BODY * LEADING);
        if !label.is_empty() {
            let baseline = l.y + BODY;
            l.ops().push(Op::Text {
                x: LEFT,
                y: baseline,
                size: BODY,
                weight: Weight::Bold,
                color: INK,
                text: label.to_owned(),
            });
        }
        l.block(
            None,
            LEFT + 95.0,
            WIDTH - 95.0,
            &value,
            BODY,
            Weight::Regular,
            INK,
        );
    }
    l.rule();

    // 1. Findings by area.
    l.heading(SECTIONS[0], H2, true);
    if r.areas.is_empty() {
        l.paragraph("No device reported any finding.");
    }
    for area in &r.areas {
        l.heading(area.title, H3, false);
        for item in &area.items {
            l.ensure(3.0 * BODY * LEADING);
            l.block(
                Some((item.mark.symbol(), mark_color(item.mark))),
                LEFT + HANG,
                WIDTH - HANG,
                &item.title,
                BODY,
                Weight::Bold,
                INK,
            );
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                &item.figures,
                BODY,
                Weight::Regular,
                INK,
            );
            let mut meta = format!("{} · {} priority", item.control, item.severity);
            if !item.reference.is_empty() {
                meta.push_str(" · ");
                meta.push_str(&item.reference);
            }
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                &meta,
                SMALL,
                Weight::Regular,
                MUTED,
            );
            l.gap(3.0);
        }
    }

    // 2. Conclusion.
    l.heading(SECTIONS[1], H2, true);
    for p in &r.conclusion.paragraphs {
        l.paragraph(p);
    }

    // 3. Recommendations.
    l.heading(SECTIONS[2], H2, true);
    for priority in &r.recommendations {
        l.heading(priority_heading(priority.severity), H3, false);
        if priority.recommendations.is_empty() {
            l.block(
                Some(("•", INK)),
                LEFT + HANG,
                WIDTH - HANG,
                "No recommendation",
                BODY,
                Weight::Regular,
                INK,
            );
            continue;
        }
        for rec in &priority.recommendations {
            l.ensure(4.0 * BODY * LEADING);
            let title = match &rec.control {
                Some(c) => format!("{} ({c})", rec.title),
                None => rec.title.clone(),
            };
            l.block(
                Some(("•", INK)),
                LEFT + HANG,
                WIDTH - HANG,
                &title,
                BODY,
                Weight::Bold,
                INK,
            );
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                &rec.figures,
                BODY,
                Weight::Regular,
                INK,
            );
            if !rec.reference.is_empty() {
                l.block(
                    None,
                    LEFT + HANG,
                    WIDTH - HANG,
                    &rec.reference,
                    SMALL,
                    Weight::Regular,
                    MUTED,
                );
            }
            for (i, step) in rec.steps.iter().enumerate() {
                let number = format!("{}.", i + 1);
                l.block(
                    Some((&number, INK)),
                    LEFT + 2.0 * HANG,
                    WIDTH - 2.0 * HANG,
                    step,
                    BODY,
                    Weight::Regular,
                    INK,
                );
            }
            if !rec.layer_fixes.is_empty() {
                l.block(
                    None,
                    LEFT + HANG,
                    WIDTH - HANG,
                    "Where another configuration layer decides the setting:",
                    BODY,
                    Weight::Regular,
                    INK,
                );
                for fix in &rec.layer_fixes {
                    l.block(
                        Some(("–", INK)),
                        LEFT + 2.0 * HANG,
                        WIDTH - 2.0 * HANG,
                        fix,
                        BODY,
                        Weight::Regular,
                        INK,
                    );
                }
            }
            l.gap(4.0);
        }
    }

    // 4. What the clients cannot enforce.
    l.heading(SECTIONS[3], H2, true);
    if r.outside.is_empty() {
        l.paragraph(super::OUTSIDE_NONE);
    } else {
        l.paragraph(super::OUTSIDE_INTRO);
    }
    for o in &r.outside {
        l.ensure(3.0 * BODY * LEADING);
        l.block(
            None,
            LEFT,
            WIDTH,
            &format!("{} ({})", o.title, o.control),
            BODY,
            Weight::Bold,
            INK,
        );
        if !o.not_applicable.is_empty() {
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                "Not applicable in the client:",
                BODY,
                Weight::Regular,
                INK,
            );
            for line in &o.not_applicable {
                l.block(
                    Some(("–", INK)),
                    LEFT + 2.0 * HANG,
                    WIDTH - 2.0 * HANG,
                    line,
                    BODY,
                    Weight::Regular,
                    INK,
                );
            }
        }
        if !o.overridden.is_empty() {
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                "Decided by a configuration layer the agent does not own:",
                BODY,
                Weight::Regular,
                INK,
            );
            for line in &o.overridden {
                l.block(
                    Some(("–", INK)),
                    LEFT + 2.0 * HANG,
                    WIDTH - 2.0 * HANG,
                    line,
                    BODY,
                    Weight::Regular,
                    INK,
                );
            }
        }
        if let Some(c) = &o.instead {
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                &format!(
                    "Instead, on the {}: {} (Source: {}.)",
                    c.place, c.what, c.source
                ),
                BODY,
                Weight::Regular,
                INK,
            );
        }
        l.gap(4.0);
    }

    // 5. Note.
    l.heading(SECTIONS[4], H2, true);
    for p in &r.note {
        l.paragraph(p);
    }
    l.heading("Not verified", H3, false);
    for line in &r.not_verified {
        l.block(
            Some(("•", INK)),
            LEFT + HANG,
            WIDTH - HANG,
            line,
            BODY,
            Weight::Regular,
            INK,
        );
    }

    // Appendix.
    l.new_page();
    l.heading(SECTIONS[5], H2, true);
    l.paragraph(&super::appendix_intro(&r.appendix));
    for d in &r.appendix.devices {
        l.ensure(4.0 * BODY * LEADING);
        l.gap(4.0);
        l.block(
            None,
            LEFT,
            WIDTH,
            &format!("{} ({})", d.hostname, d.id),
            BODY,
            Weight::Bold,
            INK,
        );
        l.block(
            None,
            LEFT,
            WIDTH,
            &super::device_line(d),
            SMALL,
            Weight::Regular,
            MUTED,
        );
        for e in &d.evidence {
            l.ensure(3.0 * BODY * LEADING);
            l.block(
                Some(("✗", FAIL)),
                LEFT + HANG,
                WIDTH - HANG,
                &format!("{} ({})", e.control_title, e.control),
                BODY,
                Weight::Bold,
                INK,
            );
            for line in super::evidence_lines(e) {
                l.block(
                    None,
                    LEFT + HANG,
                    WIDTH - HANG,
                    &line,
                    SMALL,
                    Weight::Regular,
                    INK,
                );
            }
        }
        if d.more > 0 {
            l.block(
                None,
                LEFT + HANG,
                WIDTH - HANG,
                &super::more_line(d.more),
                SMALL,
                Weight::Regular,
                MUTED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_within_the_column_and_long_words_break() {
        let l = Layout {
            regular: Face::new(REGULAR).unwrap(),
            bold: Face::new(BOLD).unwrap(),
            pages: vec![Vec::new()],
            y: TOP,
            bookmarks: Vec::new(),
        };
        let text = "The quick brown fox jumps over the lazy dog ".repeat(10);
        let lines = l.wrap(&text, BODY, Weight::Regular, 200.0);
        assert!(lines.len() > 3, "{lines:?}");
        for line in &lines {
            assert!(l.regular.width(line, BODY) <= 200.0, "{line}");
        }
        assert_eq!(lines.join(" "), text.trim_end());
        let path = "/home/alice/.thunderbird/".repeat(10);
        let lines = l.wrap(&path, BODY, Weight::Bold, 100.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), path);
        assert!(l.wrap("", BODY, Weight::Regular, 100.0).is_empty());
        assert_eq!(l.wrap("a\nb", BODY, Weight::Regular, 100.0), ["a b"]);
        // The marks have glyphs of their own (not the missing-glyph box's width).
        assert!(l.regular.width("✓", BODY) > 0.0);
        assert!(l.regular.charmap.map('✓').is_some() && l.bold.charmap.map('✗').is_some());
    }

    #[test]
    fn a_page_that_is_full_continues_on_the_next() {
        let mut l = Layout {
            regular: Face::new(REGULAR).unwrap(),
            bold: Face::new(BOLD).unwrap(),
            pages: vec![Vec::new()],
            y: TOP,
            bookmarks: Vec::new(),
        };
        for _ in 0..200 {
            l.paragraph("one line");
        }
        assert!(l.pages.len() > 2);
        for page in &l.pages {
            for op in page {
                if let Op::Text { y, .. } = op {
                    assert!(*y <= BOTTOM + BODY && *y >= TOP, "{y}");
                }
            }
        }
    }
}
