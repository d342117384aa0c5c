// The loss plot of jaxstyle's pages: series against steps or seconds, log-scale y, on a
// canvas (no library: the pages work without the internet).
"use strict";

const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989",
                 "#0a7ea4", "#6e7781", "#e16f24", "#4d2d00", "#116329", "#a475f9"];

class LossPlot {
  constructor(canvas) {
    this.canvas = canvas;
    this.series = [];     // names
    this.points = [];     // [t, step, v0, v1, ...]
    this.x = "step";      // or "time"
    this.hidden = new Set();
    this.pending = false;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  reset(series, points) {
    this.series = series.slice();
    this.points = points.slice();
    this.request();
  }

  append(series, points) {
    this.series = series.slice();
    for (const p of points) this.points.push(p);
    this.request();
  }

  setAxis(x) { this.x = x; this.request(); }

  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "12px system-ui, sans-serif";
    const xi = this.x === "time" ? 0 : 1;
    const shown = this.series.map((_, i) => i).filter(i => !this.hidden.has(this.series[i]));
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const p of this.points) {
      x0 = Math.min(x0, p[xi]); x1 = Math.max(x1, p[xi]);
      for (const i of shown) {
        const v = p[2 + i];
        if (v !== null && v > 0) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
      }
    }
    const left = 58, right = 12, bottom = 34;
    const top = 8 + this.legend(g, w);
    if (!(x1 >= x0) || !(y1 >= y0)) {
      g.fillStyle = "#6e7781";
      g.fillText("the plot starts with the first steps", left, top + 20);
      return;
    }
    if (x1 === x0) x1 = x0 + 1;
    let ly0 = Math.floor(Math.log10(y0)), ly1 = Math.ceil(Math.log10(y1));
    if (ly1 === ly0) ly1 = ly0 + 1;
    const px = v => left + (v - x0) / (x1 - x0) * (w - left - right);
    const py = v => top + (ly1 - Math.log10(v)) / (ly1 - ly0) * (h - top - bottom);
    // Grid: decades (labelled) and their 2..9 (faint).
    g.strokeStyle = "#d0d7de"; g.fillStyle = "#57606a"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    const stride = Math.max(1, Math.ceil((ly1 - ly0) / 8));
    for (let d = ly0; d <= ly1; d++) {
      const y = py(10 ** d);
      g.globalAlpha = 1; g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
      if ((d - ly0) % stride === 0) g.fillText(`1e${d}`, left - 6, y);
      if (d < ly1 && ly1 - ly0 <= 6) {
        g.globalAlpha = 0.35;
        for (let k = 2; k < 10; k++) {
          const yk = py(k * 10 ** d);
          g.beginPath(); g.moveTo(left, yk); g.lineTo(w - right, yk); g.stroke();
        }
      }
    }
    g.globalAlpha = 1;
    g.textAlign = "center"; g.textBaseline = "top";
    for (const v of ticks(x0, x1, 6)) {
      const x = px(v);
      g.beginPath(); g.moveTo(x, h - bottom); g.lineTo(x, h - bottom + 4); g.stroke();
      g.fillText(this.x === "time" ? `${+v.toPrecision(4)} s` : `${v}`, x, h - bottom + 6);
    }
    g.fillText(this.x === "time" ? "seconds" : "steps", (left + w - right) / 2, h - 14);
    g.strokeStyle = "#8c959f";
    g.strokeRect(left, top, w - left - right, h - top - bottom);
    // The series: a line through finite positive values, a gap elsewhere.
    g.lineWidth = 1.6;
    for (const i of shown) {
      g.strokeStyle = PALETTE[i % PALETTE.length];
      g.beginPath();
      let open = false;
      for (const p of this.points) {
        const v = p[2 + i];
        if (v === null || !(v > 0)) { open = false; continue; }
        const x = px(p[xi]), y = py(v);
        if (open) g.lineTo(x, y); else g.moveTo(x, y);
        open = true;
      }
      g.stroke();
      if (this.points.length === 1) {
        const v = this.points[0][2 + i];
        if (v > 0) { g.fillStyle = g.strokeStyle; g.fillRect(px(this.points[0][xi]) - 2, py(v) - 2, 4, 4); }
      }
    }
  }

  // The series' names above the plot, flowing onto more lines as needed; returns the
  // height they take.
  legend(g, w) {
    this.boxes = [];
    g.textAlign = "left"; g.textBaseline = "middle";
    let x = 58, y = 10;
    this.series.forEach((name, i) => {
      const width = 18 + g.measureText(name).width + 16;
      if (x > 58 && x + width > w - 8) { x = 58; y += 18; }
      g.globalAlpha = this.hidden.has(name) ? 0.35 : 1;
      g.fillStyle = PALETTE[i % PALETTE.length];
      g.fillRect(x, y - 4, 14, 8);
      g.fillStyle = "#24292f";
      g.fillText(name, x + 18, y);
      this.boxes.push([x, y - 8, width, 16, name]);
      x += width;
    });
    g.globalAlpha = 1;
    return this.series.length ? y + 10 : 0;
  }

  // A click on a legend entry hides or shows its series.
  click(event) {
    const r = this.canvas.getBoundingClientRect();
    const x = event.clientX - r.left, y = event.clientY - r.top;
    for (const [bx, by, bw, bh, name] of this.boxes || []) {
      if (x >= bx && x < bx + bw && y >= by && y < by + bh) {
        if (this.hidden.has(name)) this.hidden.delete(name); else this.hidden.add(name);
        this.request();
      }
    }
  }
}

// About n round numbers between a and b.
function ticks(a, b, n) {
  const span = b - a, raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(a / step) * step; v <= b + 1e-9 * span; v += step) {
    out.push(+v.toPrecision(12));
  }
  return out;
}
