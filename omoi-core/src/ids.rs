//! Typed identifiers.
//!
//! Every entity has its own id type, a newtype over a UUID v7 (time-ordered, so ids sort by
//! creation time and index well). Mixing up a [`TaskId`] and a [`SpecId`] is a compile error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Error returned when a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: {reason}")]
pub struct ParseIdError {
    /// The id type that was being parsed (`"task"`, `"spec"`, …).
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (for example one read back from storage).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The entity kind this id names, as used in error messages and events.
            pub const KIND: &'static str = $kind;
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|e| ParseIdError {
                    kind: $kind,
                    input: s.to_owned(),
                    reason: e.to_string(),
                })
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

typed_id!(
    /// Identifies a [`Task`](crate::Task), the unit of work an agent executes.
    TaskId,
    "task"
);
typed_id!(
    /// Identifies a [`Spec`](crate::Spec).
    SpecId,
    "spec"
);
typed_id!(
    /// Identifies a [`Ticket`](crate::Ticket), a group of tasks.
    TicketId,
    "ticket"
);
typed_id!(
    /// Identifies an [`Agent`](crate::Agent).
    AgentId,
    "agent"
);
typed_id!(
    /// Identifies a [`Discovery`](crate::Discovery).
    DiscoveryId,
    "discovery"
);
typed_id!(
    /// Identifies a [`Memory`](crate::Memory).
    MemoryId,
    "memory"
);
typed_id!(
    /// Identifies a sandbox created through a [`SandboxProvider`](crate::SandboxProvider).
    SandboxId,
    "sandbox"
);
typed_id!(
    /// Identifies an [`ApiKey`](crate::ApiKey) (what revoking it names; never the key).
    ApiKeyId,
    "api key"
);
typed_id!(
    /// Identifies an [`Intervention`](crate::Intervention): a steering message from a monitor.
    InterventionId,
    "intervention"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip_through_strings() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert!(a < b, "UUID v7 ids must sort by creation");
        assert_eq!(a.as_uuid().get_version_num(), 7);
        let parsed: TaskId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{a}\""));
    }

    #[test]
    fn parse_error_names_the_kind_and_input() {
        let err = "not-a-uuid".parse::<SpecId>().unwrap_err();
        assert_eq!(err.kind, "spec");
        assert_eq!(err.input, "not-a-uuid");
        assert!(err.to_string().contains("invalid spec id"));
    }
}
