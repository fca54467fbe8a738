//! `string_enum!`: fieldless enums whose string form is fixed in one place.
//!
//! States, priorities, modes and kinds are enums in Rust and strings only at the storage and
//! wire boundary. This macro generates, from one list of `Variant => "name"` pairs, the
//! `as_str`/`FromStr`/`Display` pair, serde (as that string), a JSON schema (an enum of those
//! strings) and an `ALL` array used by exhaustive tests, so the three can never disagree.

/// Error returned when a string names no variant of a [`string_enum!`](crate::string_enum) type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {input:?} (expected one of: {expected})")]
pub struct ParseEnumError {
    /// The enum being parsed, e.g. `"task state"`.
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// The accepted spellings, comma separated.
    pub expected: String,
}

/// Declares a fieldless enum whose string form is fixed in one place (see the module docs).
/// Exported for omoi's other crates, which must depend on `serde` and `schemars`.
#[macro_export]
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The stable string form used in storage, events and on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            /// The string form; honours width, fill and alignment (`{:<12}`).
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ParseEnumError;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::ParseEnumError {
                        kind: $kind,
                        input: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!({
                    "type": "string",
                    "enum": [ $( $text ),+ ]
                })
            }
        }
    };
}
