//! Who plays an agent phase: the engine asks, the caller's config answers.

use crate::agent::Seat;
use crate::provider::ProviderError;

/// The schema a second opinion submits; frozen into runs whose phases have a `review`.
pub const REVIEW_SCHEMA: &str = "review";

/// Which seat of an agent phase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatRole {
    /// The model doing the phase's work.
    Primary,
    /// The second opinion.
    Reviewer,
}

/// Resolves a phase's role, provider and model into a ready [`Seat`].
///
/// The CLI implements it from `.wfe/config.json`, the user's keys and
/// `--replay`; the engine stays free of config files and environments.
pub trait Seats: Send + Sync + std::fmt::Debug {
    /// The seat for phase `phase` (its id in the template): `role`, or
    /// `provider` and `model` overriding it (a retry's override wins over
    /// the template's, the caller has already chosen).
    fn seat(
        &self,
        phase: &str,
        seat: SeatRole,
        role: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<Seat, ProviderError>;
}
