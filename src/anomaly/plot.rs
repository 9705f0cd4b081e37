//! A PNG of two score histograms on [0, 1], drawn pixel by pixel (no plotting library: two
//! bar series, axes, tick labels and a threshold line are all the picture needs).
//!
//! Normal events are blue, attack events red, where both fall in a bin the colours mix; the
//! dashed line is the threshold. Each series is scaled to its own tallest bin, so a small
//! attack set is as visible as a large normal one.

use std::io::BufWriter;
use std::path::Path;

const WIDTH: usize = 800;
const HEIGHT: usize = 400;
const MARGIN_LEFT: usize = 40;
const MARGIN_BOTTOM: usize = 40;
const MARGIN_TOP: usize = 20;
const BINS: usize = 50;

const NORMAL: [u8; 3] = [60, 110, 220];
const ATTACK: [u8; 3] = [220, 60, 60];
const INK: [u8; 3] = [30, 30, 30];

/// 3×5 digits and the point, one row of three bits per line.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            pixels: vec![255; WIDTH * HEIGHT * 3],
        }
    }

    fn set(&mut self, x: usize, y: usize, colour: [u8; 3], alpha: f64) {
        if x >= WIDTH || y >= HEIGHT {
            return;
        }
        let at = (y * WIDTH + x) * 3;
        for (i, c) in colour.iter().enumerate() {
            let old = f64::from(self.pixels[at + i]);
            self.pixels[at + i] = (old * (1.0 - alpha) + f64::from(*c) * alpha) as u8;
        }
    }

    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: [u8; 3], alpha: f64) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.set(x, y, colour, alpha);
            }
        }
    }

    /// Text at (x, y), each font pixel drawn as a 2×2 block.
    fn text(&mut self, x: usize, y: usize, text: &str) {
        for (i, c) in text.chars().enumerate() {
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        let (px, py) = (x + i * 8 + col * 2, y + row * 2);
                        self.fill(px, py, px + 2, py + 2, INK, 1.0);
                    }
                }
            }
        }
    }
}

fn histogram(scores: &[f64]) -> [usize; BINS] {
    let mut bins = [0; BINS];
    for s in scores {
        let i = ((s.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        bins[i] += 1;
    }
    bins
}

pub fn histograms(
    path: &Path,
    normal: &[f64],
    attacks: &[f64],
    threshold: f64,
) -> Result<(), String> {
    let mut canvas = Canvas::new();
    let plot_w = WIDTH - MARGIN_LEFT - 20;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let base = HEIGHT - MARGIN_BOTTOM;
    for (scores, colour) in [(normal, NORMAL), (attacks, ATTACK)] {
        let bins = histogram(scores);
        let tallest = bins.iter().copied().max().unwrap_or(0).max(1) as f64;
        for (i, count) in bins.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            // Square-root heights keep a bin of a few events visible beside one of thousands.
            let h = ((*count as f64 / tallest).sqrt() * plot_h as f64).max(1.0) as usize;
            let x0 = MARGIN_LEFT + i * plot_w / BINS;
            let x1 = MARGIN_LEFT + (i + 1) * plot_w / BINS;
            canvas.fill(x0 + 1, base - h, x1, base, colour, 0.6);
        }
    }
    canvas.fill(MARGIN_LEFT, base, MARGIN_LEFT + plot_w, base + 1, INK, 1.0);
    canvas.fill(MARGIN_LEFT - 1, MARGIN_TOP, MARGIN_LEFT, base, INK, 1.0);
    for tick in 0..=10 {
        let x = MARGIN_LEFT + tick * plot_w / 10;
        canvas.fill(x, base, x + 1, base + 5, INK, 1.0);
        let label = format!("{:.1}", tick as f64 / 10.0);
        canvas.text(x.saturating_sub(10), base + 10, &label);
    }
    let tx = MARGIN_LEFT + (threshold.clamp(0.0, 1.0) * plot_w as f64) as usize;
    for y in (MARGIN_TOP..base).step_by(6) {
        canvas.fill(tx, y, tx + 2, y + 3, INK, 1.0);
    }
    // The legend, above the plot: blue (normal) then red (attacks).
    canvas.fill(MARGIN_LEFT, 4, MARGIN_LEFT + 12, 14, NORMAL, 0.8);
    canvas.fill(MARGIN_LEFT + 20, 4, MARGIN_LEFT + 32, 14, ATTACK, 0.8);

    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), WIDTH as u32, HEIGHT as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    writer
        .write_image_data(&canvas.pixels)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}
