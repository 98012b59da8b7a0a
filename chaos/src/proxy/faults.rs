//! The fault model of one link: what the proxy does to the bytes of each direction, its JSON
//! form (the body of `PUT /links/{name}/faults`), its validation, and the per-direction plan the
//! pumps read for every chunk.
//!
//! Every field is optional; a missing field is no fault, so `{}` is a healthy link. The shaping
//! fields (latency, bandwidth, stalls, resets) apply to both directions and can be overridden
//! field by field under `upstream` (client→server) or `downstream` (server→client).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bound of every `*_ms` field: one hour. Larger values are typos, and bounding them keeps
/// `Instant` arithmetic far from overflow.
pub const MAX_MS: u64 = 3_600_000;

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client → server.
    Upstream,
    /// Server → client.
    Downstream,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        })
    }
}

impl FromStr for Direction {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "upstream" => Ok(Direction::Upstream),
            "downstream" => Ok(Direction::Downstream),
            other => Err(FaultError::Direction(other.to_string())),
        }
    }
}

/// The faults that can differ per direction. In [`Faults`] they are given for both directions
/// at the top level and overridden field by field per direction.
/// Also the CLI's shaping flags (`plum-faultproxy set --latency-ms ...`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Shaping {
    /// Added delay per chunk, counted from when the proxy read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// The delay varies uniformly within ± this much (never below zero). Bytes stay in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub jitter_ms: Option<u64>,
    /// Rate limit per connection and direction, in kilobytes (1000 bytes) per second, as tc's
    /// `kbps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub bandwidth_kbps: Option<u64>,
    /// Probability per chunk of holding the direction for `stall_ms`, as a lost segment
    /// waits for its retransmission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub stall_prob: Option<f64>,
    /// How long a stall holds the direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub stall_ms: Option<u64>,
    /// Probability per chunk of resetting the connection (RST to both sides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[arg(long)]
    pub reset_prob: Option<f64>,
}

impl Shaping {
    /// Field by field: `self` where set, else `base`.
    fn over(&self, base: &Shaping) -> Shaping {
        Shaping {
            latency_ms: self.latency_ms.or(base.latency_ms),
            jitter_ms: self.jitter_ms.or(base.jitter_ms),
            bandwidth_kbps: self.bandwidth_kbps.or(base.bandwidth_kbps),
            stall_prob: self.stall_prob.or(base.stall_prob),
            stall_ms: self.stall_ms.or(base.stall_ms),
            reset_prob: self.reset_prob.or(base.reset_prob),
        }
    }

    fn validate(&self, scope: &str) -> Result<(), FaultError> {
        for (field, value) in
            [("latency_ms", self.latency_ms), ("jitter_ms", self.jitter_ms), ("stall_ms", self.stall_ms)]
        {
            if let Some(ms) = value
                && ms > MAX_MS
            {
                return Err(FaultError::TooLong { field: format!("{scope}{field}"), ms });
            }
        }
        // Zero would stop the direction for good: that is `cut`, say it so.
        if self.bandwidth_kbps == Some(0) {
            return Err(FaultError::ZeroBandwidth { field: format!("{scope}bandwidth_kbps") });
        }
        for (field, value) in [("stall_prob", self.stall_prob), ("reset_prob", self.reset_prob)] {
            if let Some(p) = value
                && !(0.0..=1.0).contains(&p)
            {
                return Err(FaultError::Probability { field: format!("{scope}{field}"), value: p });
            }
        }
        Ok(())
    }
}

/// The whole fault set of a link. `Faults::default()` is no fault at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    // The six shaping fields below mean what they mean in [`Shaping`], for both directions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_kbps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_prob: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_prob: Option<f64>,
    /// Overrides for client → server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Shaping>,
    /// Overrides for server → client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<Shaping>,
    /// Nothing crosses in either direction; connections are accepted and kept, never answered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub blackhole: bool,
    /// Nothing crosses in this one direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Direction>,
    /// New connections are reset at once, as by a host with nothing listening.
    #[serde(default, skip_serializing_if = "is_false")]
    pub refuse: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl fmt::Display for Faults {
    /// The compact JSON form (`{}` for none): what logs and the CLI table show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Faults {
    /// No fault: what `heal` installs.
    pub fn none() -> Faults {
        Faults::default()
    }

    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// The top-level shaping fields, which apply to both directions.
    pub fn both(&self) -> Shaping {
        Shaping {
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            bandwidth_kbps: self.bandwidth_kbps,
            stall_prob: self.stall_prob,
            stall_ms: self.stall_ms,
            reset_prob: self.reset_prob,
        }
    }

    /// Sets the top-level shaping fields (both directions) to `shaping`.
    pub fn set_both(&mut self, shaping: Shaping) {
        let Shaping { latency_ms, jitter_ms, bandwidth_kbps, stall_prob, stall_ms, reset_prob } = shaping;
        (self.latency_ms, self.jitter_ms, self.bandwidth_kbps) = (latency_ms, jitter_ms, bandwidth_kbps);
        (self.stall_prob, self.stall_ms, self.reset_prob) = (stall_prob, stall_ms, reset_prob);
    }

    /// What one direction's shaping fields come to, overrides applied.
    pub fn shaping(&self, dir: Direction) -> Shaping {
        let both = self.both();
        let over = match dir {
            Direction::Upstream => self.upstream.as_ref(),
            Direction::Downstream => self.downstream.as_ref(),
        };
        over.map_or(both.clone(), |o| o.over(&both))
    }

    /// Rejects values the pumps could not apply, naming the field.
    pub fn validate(&self) -> Result<(), FaultError> {
        self.both().validate("")?;
        if let Some(up) = &self.upstream {
            up.validate("upstream.")?;
        }
        if let Some(down) = &self.downstream {
            down.validate("downstream.")?;
        }
        // On the merged view, so a probability given for both directions and a duration
        // given for one still count as set.
        for dir in [Direction::Upstream, Direction::Downstream] {
            let s = self.shaping(dir);
            if s.stall_prob.is_some_and(|p| p > 0.0) && s.stall_ms.unwrap_or(0) == 0 {
                return Err(FaultError::StallWithoutDuration(dir));
            }
        }
        Ok(())
    }

    /// What the pump of `dir` applies to its next chunk.
    pub fn plan(&self, dir: Direction) -> Plan {
        let s = self.shaping(dir);
        Plan {
            hold: self.blackhole || self.cut == Some(dir),
            latency: Duration::from_millis(s.latency_ms.unwrap_or(0)),
            jitter: Duration::from_millis(s.jitter_ms.unwrap_or(0)),
            bytes_per_sec: s.bandwidth_kbps.map(|k| k.saturating_mul(1000)),
            stall_prob: clamp_prob(s.stall_prob),
            stall: Duration::from_millis(s.stall_ms.unwrap_or(0)),
            reset_prob: clamp_prob(s.reset_prob),
        }
    }

    /// Whether a new connection must wait before the proxy dials the upstream: a TCP handshake
    /// needs both directions, so behind a cut or a black hole the upstream sees nothing.
    pub fn holds_handshake(&self) -> bool {
        self.blackhole || self.cut.is_some()
    }
}

/// Validation already bounds probabilities; clamping again keeps `random_bool` from panicking
/// even on a set that skipped validation.
fn clamp_prob(p: Option<f64>) -> f64 {
    match p {
        Some(p) if p.is_finite() => p.clamp(0.0, 1.0),
        _ => 0.0,
    }
}

/// One direction's faults, resolved: what the pump reads per chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Forward nothing (black hole or a cut of this direction); bytes wait, in order.
    pub hold: bool,
    pub latency: Duration,
    pub jitter: Duration,
    pub bytes_per_sec: Option<u64>,
    pub stall_prob: f64,
    pub stall: Duration,
    pub reset_prob: f64,
}

impl Plan {
    /// The delay of a chunk whose jitter draw is `unit` (in [-1, 1]); never negative.
    pub fn delay(&self, unit: f64) -> Duration {
        let ms = self.latency.as_secs_f64() * 1000.0 + self.jitter.as_secs_f64() * 1000.0 * unit.clamp(-1.0, 1.0);
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// How many of `remaining` bytes to write at once: all of them without a rate limit, else
    /// 50 ms worth, so a rate change or a hold lands within ~50 ms even mid-chunk.
    pub fn piece_len(&self, remaining: usize) -> usize {
        match self.bytes_per_sec {
            None => remaining,
            Some(rate) => {
                let piece = usize::try_from(rate / 20).unwrap_or(usize::MAX).max(1);
                remaining.min(piece)
            }
        }
    }

    /// How long writing `len` bytes takes at the rate limit.
    pub fn pace(&self, len: usize) -> Duration {
        match self.bytes_per_sec {
            None | Some(0) => Duration::ZERO,
            Some(rate) => Duration::from_secs_f64(len as f64 / rate as f64),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("{field} must be at most {MAX_MS} ms, got {ms}")]
    TooLong { field: String, ms: u64 },
    #[error("{field} must be a probability in [0, 1], got {value}")]
    Probability { field: String, value: f64 },
    #[error("{field} must be at least 1; to stop a direction use \"cut\"")]
    ZeroBandwidth { field: String },
    #[error("stall_prob is set for {0} but stall_ms is not (or is 0)")]
    StallWithoutDuration(Direction),
    #[error("direction must be \"upstream\" or \"downstream\", got {0:?}")]
    Direction(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_no_fault_and_serializes_back_to_empty() {
        let f: Faults = serde_json::from_str("{}").unwrap();
        assert!(f.is_none());
        assert_eq!(f.to_string(), "{}");
        let plan = f.plan(Direction::Upstream);
        assert!(!plan.hold);
        assert_eq!(plan.latency, Duration::ZERO);
        assert_eq!(plan.bytes_per_sec, None);
        assert_eq!(plan.reset_prob, 0.0);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        // A typo must not silently install "no fault".
        assert!(serde_json::from_str::<Faults>(r#"{"latency":100}"#).is_err());
        assert!(serde_json::from_str::<Faults>(r#"{"upstream":{"latncy_ms":1}}"#).is_err());
        assert!(serde_json::from_str::<Faults>(r#"{"cut":"sideways"}"#).is_err());
    }

    #[test]
    fn per_direction_overrides_apply_field_by_field() {
        let f: Faults = serde_json::from_str(
            r#"{"latency_ms":100,"jitter_ms":10,"downstream":{"latency_ms":300},"upstream":{"bandwidth_kbps":5}}"#,
        )
        .unwrap();
        f.validate().unwrap();
        let up = f.plan(Direction::Upstream);
        let down = f.plan(Direction::Downstream);
        assert_eq!(up.latency, Duration::from_millis(100));
        assert_eq!(up.bytes_per_sec, Some(5000));
        assert_eq!(down.latency, Duration::from_millis(300));
        assert_eq!(down.jitter, Duration::from_millis(10), "jitter not overridden: inherited");
        assert_eq!(down.bytes_per_sec, None);
    }

    #[test]
    fn cut_holds_one_direction_and_blackhole_both() {
        let cut = Faults { cut: Some(Direction::Downstream), ..Faults::none() };
        assert!(!cut.plan(Direction::Upstream).hold);
        assert!(cut.plan(Direction::Downstream).hold);
        assert!(cut.holds_handshake());
        let hole = Faults { blackhole: true, ..Faults::none() };
        assert!(hole.plan(Direction::Upstream).hold);
        assert!(hole.plan(Direction::Downstream).hold);
        assert!(!Faults { latency_ms: Some(5), ..Faults::none() }.holds_handshake());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = Faults { stall_prob: Some(1.5), stall_ms: Some(10), ..Faults::none() };
        assert_eq!(bad.validate(), Err(FaultError::Probability { field: "stall_prob".into(), value: 1.5 }));
        let nan = Faults { reset_prob: Some(f64::NAN), ..Faults::none() };
        assert!(matches!(nan.validate(), Err(FaultError::Probability { .. })));
        let long = Faults {
            downstream: Some(Shaping { latency_ms: Some(MAX_MS + 1), ..Shaping::default() }),
            ..Faults::none()
        };
        assert_eq!(long.validate(), Err(FaultError::TooLong { field: "downstream.latency_ms".into(), ms: MAX_MS + 1 }));
        let zero = Faults { bandwidth_kbps: Some(0), ..Faults::none() };
        assert!(matches!(zero.validate(), Err(FaultError::ZeroBandwidth { .. })));
    }

    #[test]
    fn a_stall_needs_a_duration_in_the_merged_view() {
        let missing = Faults { stall_prob: Some(0.1), ..Faults::none() };
        assert!(matches!(missing.validate(), Err(FaultError::StallWithoutDuration(_))));
        // Probability for both directions, duration only upstream: downstream lacks one.
        let half = Faults {
            stall_prob: Some(0.1),
            upstream: Some(Shaping { stall_ms: Some(50), ..Shaping::default() }),
            ..Faults::none()
        };
        assert_eq!(half.validate(), Err(FaultError::StallWithoutDuration(Direction::Downstream)));
        let ok = Faults { stall_prob: Some(0.1), stall_ms: Some(50), ..Faults::none() };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn delay_spreads_by_jitter_and_never_goes_negative() {
        let plan = Faults { latency_ms: Some(100), jitter_ms: Some(40), ..Faults::none() }.plan(Direction::Upstream);
        assert_eq!(plan.delay(0.0), Duration::from_millis(100));
        assert_eq!(plan.delay(1.0), Duration::from_millis(140));
        assert_eq!(plan.delay(-1.0), Duration::from_millis(60));
        let wide = Faults { latency_ms: Some(10), jitter_ms: Some(50), ..Faults::none() }.plan(Direction::Upstream);
        assert_eq!(wide.delay(-1.0), Duration::ZERO);
    }

    #[test]
    fn rate_limit_writes_fifty_ms_pieces() {
        let plan = Faults { bandwidth_kbps: Some(100), ..Faults::none() }.plan(Direction::Upstream);
        assert_eq!(plan.piece_len(16_384), 5_000);
        assert_eq!(plan.piece_len(100), 100);
        assert_eq!(plan.pace(5_000), Duration::from_millis(50));
        let slow = Faults { bandwidth_kbps: Some(1), ..Faults::none() }.plan(Direction::Upstream);
        assert_eq!(slow.piece_len(16_384), 50);
        let free = Faults::none().plan(Direction::Upstream);
        assert_eq!(free.piece_len(16_384), 16_384);
        assert_eq!(free.pace(16_384), Duration::ZERO);
    }

    #[test]
    fn direction_parses_and_displays() {
        assert_eq!("upstream".parse::<Direction>(), Ok(Direction::Upstream));
        assert_eq!(Direction::Downstream.to_string(), "downstream");
        assert!("up".parse::<Direction>().is_err());
    }
}
