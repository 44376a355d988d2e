//! `abproxy plan`: devices per arm needed to detect a change of a conversion rate, for
//! the verdict's always-valid test and for one fixed-horizon look.

use anyhow::{bail, Result};

use crate::stats::Design;

/// What `plan` is asked.
#[derive(Debug, Clone, clap::Args, Copy)]
pub struct Args {
    /// The control's conversion rate, e.g. 0.10.
    #[arg(long)]
    pub baseline: f64,
    /// The smallest absolute change worth detecting, e.g. 0.02 (10% → 12%).
    #[arg(long)]
    pub mde: f64,
    /// Two-sided significance level.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// The chance of detecting a change of --mde when there is one.
    #[arg(long, default_value_t = 0.8)]
    pub power: f64,
    /// Devices entering the experiment per day (all arms), to estimate the duration.
    #[arg(long)]
    pub daily_users: Option<u64>,
    /// Arms, the control included; each other arm is compared with the control, at
    /// alpha / (arms − 1) (Bonferroni).
    #[arg(long, default_value_t = 2)]
    pub arms: u64,
    /// Devices (both arms together) the sequential test is tuned for, as in
    /// `analyze --tuned-for` (the admin page uses the default).
    #[arg(long, default_value_t = crate::stats::DEFAULT_SEQUENTIAL_TUNING_USERS)]
    pub tuned_for: u64,
}

/// Devices per arm for the verdict's always-valid test (`stats::sequential`, read as often
/// as one likes) and for one fixed-horizon z-test read once at the end; with more than two
/// arms each comparison with the control is at alpha / (arms − 1) (Bonferroni). Printed.
pub fn run(args: Args) -> Result<()> {
    let Args {
        baseline,
        mde,
        alpha,
        power,
        daily_users,
        arms,
        tuned_for,
    } = args;
    let design = Design {
        baseline,
        mde,
        alpha,
        power,
        comparisons: arms.saturating_sub(1),
    };
    let comparisons = design.comparisons;
    let target = baseline + mde;
    if !(baseline > 0.0 && baseline < 1.0) || !(target > 0.0 && target < 1.0) || mde == 0.0 {
        bail!(
            "--baseline and --baseline + --mde must both be rates between 0 and 1, and --mde not 0"
        );
    }
    if !(alpha > 0.0 && alpha < 1.0) || !(power > 0.0 && power < 1.0) || comparisons < 1 {
        bail!("--alpha and --power must be between 0 and 1, and --arms at least 2");
    }
    if daily_users == Some(0) {
        bail!("--daily-users must be at least 1");
    }
    let arms = comparisons + 1;
    let tuned_for = tuned_for.max(1);
    println!(
        "to detect {:.2}% -> {:.2}% ({:+.2} pts), two-sided alpha = {alpha}, power {:.0}%:",
        100.0 * baseline,
        100.0 * target,
        100.0 * mde,
        100.0 * power
    );
    if comparisons > 1 {
        println!(
            "  {arms} arms: {comparisons} comparisons with the control, each at alpha = {} (Bonferroni; the verdict's Holm adjustment is never stricter)",
            alpha / comparisons as f64
        );
    }
    let sizes = [
        (
            format!("looking as often as you like (the always-valid test the verdict uses, tuned for {tuned_for} devices):"),
            design.sequential_per_arm(tuned_for),
        ),
        (
            "one look at the end (fixed-horizon z-test; significant only if read once):".to_string(),
            design.fixed_horizon_per_arm(),
        ),
    ];
    for (how, per_arm) in sizes {
        let per_arm = per_arm.ceil() as u64;
        println!("  {how}");
        println!(
            "    {per_arm} devices per arm, {} in all ({arms} arms)",
            per_arm * arms
        );
        if let Some(daily) = daily_users {
            let days = (per_arm * arms).div_ceil(daily);
            println!(
                "    at {daily} devices a day: {days} day{}",
                if days == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}
