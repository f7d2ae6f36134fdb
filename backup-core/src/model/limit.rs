//! The tri-state limit of the seeds: empty = default, 0 = unlimited, -1 = disabled, n = at most n.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A count limit such as "maximum on-demand snapshots".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Inherit the global setting (the seeds' empty field).
    #[default]
    Default,
    /// No limit (the seeds' `0`).
    Unlimited,
    /// Not allowed at all (the seeds' `-1`).
    Disabled,
    /// At most this many (a positive number).
    Max(u32),
}

impl Limit {
    /// Reads the panel's encoding: `None` = default, `0` = unlimited, `-1` = disabled,
    /// `n > 0` = at most n. Anything else is an error.
    pub fn from_panel_value(value: Option<i64>) -> Result<Self> {
        match value {
            None => Ok(Limit::Default),
            Some(0) => Ok(Limit::Unlimited),
            Some(-1) => Ok(Limit::Disabled),
            Some(n) if n > 0 && n <= i64::from(u32::MAX) => Ok(Limit::Max(n as u32)),
            Some(n) => Err(Error::invalid(
                "limit",
                format!("{n}: expected empty, 0 (unlimited), -1 (disabled) or a positive count"),
            )),
        }
    }

    /// The panel's encoding (inverse of [`Limit::from_panel_value`]).
    pub fn to_panel_value(self) -> Option<i64> {
        match self {
            Limit::Default => None,
            Limit::Unlimited => Some(0),
            Limit::Disabled => Some(-1),
            Limit::Max(n) => Some(i64::from(n)),
        }
    }

    /// Resolves `Default` against the global setting (a global `Default` means unlimited).
    pub fn resolve(self, global: Limit) -> Limit {
        match (self, global) {
            (Limit::Default, Limit::Default) => Limit::Unlimited,
            (Limit::Default, g) => g,
            (own, _) => own,
        }
    }

    /// Whether one more can be created when `current` exist (after resolving).
    pub fn allows(self, current: u64, global: Limit) -> bool {
        match self.resolve(global) {
            Limit::Unlimited | Limit::Default => true,
            Limit::Disabled => false,
            Limit::Max(n) => current < u64::from(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_values_round_trip() {
        for v in [None, Some(0), Some(-1), Some(7)] {
            assert_eq!(Limit::from_panel_value(v).unwrap().to_panel_value(), v);
        }
        assert!(Limit::from_panel_value(Some(-2)).is_err());
    }

    #[test]
    fn limits_apply() {
        assert!(Limit::Default.allows(100, Limit::Default));
        assert!(!Limit::Default.allows(3, Limit::Max(3)));
        assert!(Limit::Max(4).allows(3, Limit::Max(3)));
        assert!(!Limit::Disabled.allows(0, Limit::Unlimited));
        assert!(Limit::Unlimited.allows(10_000, Limit::Disabled));
    }
}
