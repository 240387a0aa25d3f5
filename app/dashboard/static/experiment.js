/* One experiment: GET /v1/experiments/{key}/report, drawn as tables and four SVG plots. */
"use strict";

(async () => {
  const C = Croupier;
  const { el, num, pct, pValue, interval, yesNo, date, table } = C;
  const key = document.body.dataset.key;
  const status = document.getElementById("status");
  const reportUrl = "/v1/experiments/" + encodeURIComponent(key) + "/report";

  function section(id) {
    const node = document.getElementById(id);
    C.clear(node);
    return node;
  }

  function renderHeader(r) {
    const e = r.experiment;
    document.getElementById("title").textContent = e.name + " (" + e.key + ")";
    document.title = "Croupier dashboard: " + e.key;
    document.getElementById("facts").textContent =
      "Status " + e.status + " · policy " + e.policy_type + (e.bandit ? " (bandit)" : "") +
      " · primary metric " + e.primary_metric + " · control " + e.control +
      " · started " + date(e.started_at) + (e.ended_at ? " · ended " + date(e.ended_at) : "") +
      (e.winner ? " · winner " + e.winner : "") +
      " · " + r.decisions + " decisions, " + r.closed_decisions + " closed (through " +
      date(r.closed_through) + ") · report as of " + date(r.as_of) + " UTC";
    document.getElementById("csv").setAttribute("href", reportUrl + "?format=csv");
    document.getElementById("json").setAttribute("href", reportUrl);
  }

  function renderRecommendation(rec) {
    const node = section("recommendation");
    node.className = "banner " + rec.action;
    node.appendChild(el("div", { class: "action" }, rec.action.replace(/_/g, " ") + (rec.arm ? ": " + rec.arm : "")));
    node.appendChild(el("p", {}, rec.text));
    node.appendChild(el("p", { class: "rule" }, "Rule: " + rec.rule));
  }

  function renderTraffic(r) {
    const node = section("traffic");
    node.appendChild(table(
      [
        { label: "Arm", value: (a) => a.arm },
        { label: "Decisions", value: (a) => a.decisions },
        { label: "Share", value: (a) => pct(a.share) },
        { label: "Expected share", value: (a) => pct(a.expected_share) },
      ],
      r.traffic,
    ));
    const srm = r.srm;
    if (srm) {
      const p = el("p", { class: srm.mismatch ? "error" : "note" });
      p.textContent = "Sample-ratio mismatch test: p = " + pValue(srm.p_value) +
        " (alarm below " + srm.threshold + ")" + (srm.mismatch ? " — MISMATCH: do not trust the comparisons." : " — no mismatch.") +
        (srm.note ? " " + srm.note : "");
      node.appendChild(p);
    } else {
      node.appendChild(el("p", { class: "note" }, "SRM: not computed yet."));
    }
  }

  function renderMetric(m) {
    const box = el("div", { class: "metric" });
    box.appendChild(el("h3", {}, m.metric + " — " + m.role + (m.kind ? ", " + m.kind : "") +
      (m.higher_is_better ? ", higher is better" : ", lower is better") +
      (m.role === "guardrail" ? ", tolerance " + num(m.tolerance) : "")));
    if (m.error) box.appendChild(el("p", { class: "error" }, m.error));
    box.appendChild(table(
      [
        { label: "Arm", value: (a) => a.arm },
        { label: "n", value: (a) => a.n },
        { label: "Mean", value: (a) => num(a.mean) },
        { label: "CI (fixed horizon)", value: (a) => interval(a.ci_low, a.ci_high) },
        { label: "Always-valid CI", value: (a) => interval(a.cs_low, a.cs_high) },
      ],
      m.arms,
    ));
    if (m.comparisons.length) {
      box.appendChild(table(
        [
          { label: "Treatment vs control", value: (c) => c.arm },
          { label: "Lift", value: (c) => num(c.absolute.estimate) },
          { label: "CI (fixed)", value: (c) => interval(c.absolute.ci_low, c.absolute.ci_high) },
          { label: "p (fixed)", value: (c) => pValue(c.absolute.p_value) },
          { label: "Relative lift", value: (c) => (c.relative ? pct(c.relative.estimate) : "—") },
          { label: "Always-valid interval", value: (c) => interval(c.always_valid.ci_low, c.always_valid.ci_high) },
          { label: "Always-valid p", value: (c) => pValue(c.always_valid.p_value) },
          { label: "p adjusted", value: (c) => pValue(c.p_adjusted) },
          { label: "Significant", value: (c) => yesNo(c.significant), cls: (c) => (c.significant ? "yes" : null) },
          { label: "Better", value: (c) => yesNo(c.better), cls: (c) => (c.better ? "yes" : null) },
          { label: "Harm", value: (c) => yesNo(c.harm), cls: (c) => (c.harm ? "harm" : null) },
        ],
        m.comparisons,
      ));
    }
    if (m.bayes && m.bayes.length) {
      box.appendChild(table(
        [
          { label: "Arm (Bayesian)", value: (b) => b.arm },
          { label: "P(best)", value: (b) => pct(b.p_best) },
          { label: "P(beats control)", value: (b) => pct(b.chance_to_beat_control) },
          { label: "Expected loss", value: (b) => num(b.expected_loss) },
        ],
        m.bayes,
      ));
    }
    return box;
  }

  function renderOffPolicy(op) {
    const holder = document.getElementById("off-policy-section");
    if (!op) {
      holder.hidden = true;
      return;
    }
    holder.hidden = false;
    const node = section("off-policy");
    node.appendChild(el("p", { class: "note" }, "Metric " + op.metric + ": inverse-propensity estimates of each arm's value had it been served to everyone."));
    node.appendChild(table(
      [
        { label: "Arm", value: (a) => a.arm },
        { label: "Naive mean", value: (a) => num(a.naive_mean) },
        { label: "IPS", value: (a) => num(a.ips) },
        { label: "IPS CI", value: (a) => interval(a.ips_ci_low, a.ips_ci_high) },
        { label: "IPS always-valid", value: (a) => interval(a.ips_cs_low, a.ips_cs_high) },
        { label: "SNIPS", value: (a) => num(a.snips) },
        { label: "Effective n", value: (a) => num(a.effective_sample_size) },
        { label: "Naive outside band", value: (a) => yesNo(a.naive_outside_cs), cls: (a) => (a.naive_outside_cs ? "alarm" : null) },
      ],
      op.arms,
    ));
    if (op.note) node.appendChild(el("p", { class: "note" }, op.note));
  }

  function renderSequential(gs) {
    const holder = document.getElementById("sequential-section");
    if (!gs || !gs.length) {
      holder.hidden = true;
      return;
    }
    holder.hidden = false;
    const node = section("sequential");
    for (const g of gs) {
      node.appendChild(el("h3", {}, g.arm + " — " + g.spending + " spending, status " + g.status));
      node.appendChild(table(
        [
          { label: "Look", value: (l) => l.look },
          { label: "Information", value: (l) => pct(l.information_fraction) },
          { label: "Reached", value: (l) => date(l.reached_at) },
          { label: "z", value: (l) => num(l.z) },
          { label: "Lower bound", value: (l) => num(l.lower) },
          { label: "Upper bound", value: (l) => num(l.upper) },
          { label: "Decision", value: (l) => l.decision || "—" },
        ],
        g.looks,
      ));
    }
  }

  function renderPolicy(p) {
    const node = section("policy");
    node.appendChild(el("p", { class: "note" }, "Policy " + p.type + ", version " + p.current_version + " of " + p.versions + " published."));
    if (p.recent.length) {
      const arms = Object.keys(p.recent[p.recent.length - 1].allocation);
      node.appendChild(table(
        [{ label: "Version", value: (v) => v.number }, { label: "Published (UTC)", value: (v) => date(v.created_at) }]
          .concat(arms.map((a) => ({ label: a, value: (v) => pct(v.allocation[a]) }))),
        p.recent.slice().reverse(),
      ));
    }
  }

  /* Each arm's allocation as a band stacked on the arms before it; its line is the top edge. */
  function stackedShares(arms, allocation, n) {
    const below = new Array(n).fill(0);
    return arms.map((a) => {
      const shares = allocation[a] || [];
      const low = [], high = [];
      for (let i = 0; i < n; i++) {
        const share = C.isNum(shares[i]) ? shares[i] : null;
        low.push(share === null ? null : below[i]);
        high.push(share === null ? null : below[i] + share);
        if (share !== null) below[i] += share;
      }
      return { name: a, values: high, low, high };
    });
  }

  function renderPlots(r) {
    const s = r.series;
    const arms = r.experiment.arms;
    const control = r.experiment.control;
    const metric = r.experiment.primary_metric;
    C.lineChart(document.getElementById("plot-mean"), {
      times: s.period_ends,
      bandLabel: "shaded: always-valid interval",
      yLabel: "mean " + metric + " (cumulative)",
      series: arms.map((a) => ({
        name: a, values: s.primary_mean[a] || [], low: s.primary_cs_low[a] || [], high: s.primary_cs_high[a] || [],
      })),
    });
    const treatments = arms.filter((a) => a !== control && s.lift[a]);
    C.lineChart(document.getElementById("plot-lift"), {
      times: s.period_ends,
      bandLabel: "shaded: always-valid interval",
      yLabel: "lift vs " + control + " (difference of means)",
      series: treatments.map((a) => ({
        name: a + " − " + control, values: s.lift[a] || [], low: s.lift_cs_low[a] || [], high: s.lift_cs_high[a] || [],
      })),
      refLines: [{ y: 0, label: "no difference" }],
    });
    C.lineChart(document.getElementById("plot-allocation"), {
      times: s.period_ends,
      yLabel: "share of traffic served (stacked)",
      yDomain: [0, 1],
      format: (y) => pct(y, 0),
      stacked: true,
      series: stackedShares(arms, s.allocation, s.period_ends.length),
    });
    const threshold = r.srm ? r.srm.threshold : 0.001;
    const ps = s.srm_p_value.filter((p) => C.isNum(p) && p > 0);
    const floor = Math.max(1e-12, Math.min(1e-4, threshold / 10, ...ps));
    C.lineChart(document.getElementById("plot-srm"), {
      times: s.period_ends,
      yLabel: "SRM p-value (log scale)",
      log: true,
      yDomain: [Math.pow(10, Math.floor(Math.log10(floor))), 1],
      series: [{ name: "SRM p-value", values: s.srm_p_value }],
      refLines: [{ y: threshold, label: "alarm threshold " + threshold }],
    });
  }

  try {
    const r = await C.getJSON(reportUrl);
    renderHeader(r);
    renderRecommendation(r.recommendation);
    renderTraffic(r);
    const metrics = section("metrics");
    for (const m of r.metrics) metrics.appendChild(renderMetric(m));
    renderOffPolicy(r.off_policy);
    renderSequential(r.group_sequential);
    renderPolicy(r.policy);
    document.getElementById("report").hidden = false;
    renderPlots(r);
    status.textContent = "";
    status.hidden = true;
  } catch (err) {
    C.showError(status, err);
  }
})();
