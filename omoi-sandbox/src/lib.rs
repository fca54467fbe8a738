//! # omoi-sandbox
//!
//! Adapters for the [`SandboxProvider`](omoi_core::SandboxProvider) port: somewhere an agent can
//! run commands and read and write files, confined to one workspace directory.
//!
//! | feature | type | isolation | notes |
//! |---|---|---|---|
//! | `local` (default) | [`LocalSandboxProvider`] | **none** | a directory per sandbox on this machine; trusted or development use only |
//! | `docker` | [`DockerSandboxProvider`] | container | no network unless asked, cpu/memory/pids limits, non-root user, saga creation |
//! | `daytona` | [`DaytonaSandboxProvider`] | remote VM/container | Daytona REST API and toolbox |
//!
//! Every adapter passes the conformance suite in `omoi_core::testkit::suites::sandbox` and
//! gives the same semantics:
//!
//! - **Paths** are [`WorkspacePath`](omoi_core::WorkspacePath)s (lexically confined: no `..`,
//!   not absolute). The adapter then resolves symlinks the way `realpath -m` does and refuses,
//!   with [`SandboxError::PathRejected`](omoi_core::SandboxError::PathRejected), any path whose
//!   resolution leaves the workspace — for `read_file`, `write_file` and `cwd` alike.
//! - **Commands** run in their own process group. A timeout kills the whole group
//!   (grandchildren included) and returns `timed_out` with the output produced so far. When
//!   the command's main process exits, whatever it left running in its process group is killed
//!   too: nothing outlives its exec unless it deliberately leaves the group (`setsid`).
//! - **Output** is capped per stream at `output_limit`; the rest is drained and discarded, and
//!   the stream is flagged truncated.
//! - **Destroy** is idempotent; afterwards every call fails with `Destroyed`.
//!
//! ```
//! # #[cfg(feature = "local")]
//! # async fn demo() -> Result<(), omoi_core::SandboxError> {
//! use omoi_core::{ExecRequest, SandboxProvider, SandboxSpec, WorkspacePath};
//! use omoi_sandbox::LocalSandboxProvider;
//!
//! let provider = LocalSandboxProvider::temp()?;
//! let sandbox = provider.create(SandboxSpec::default()).await?;
//! sandbox.write_file(&WorkspacePath::parse("src/hello.txt").unwrap(), b"hi").await?;
//! let out = sandbox.exec(ExecRequest::shell("cat src/hello.txt")).await?;
//! assert_eq!(out.stdout, b"hi");
//! sandbox.destroy().await?;
//! # Ok(())
//! # }
//! # #[cfg(feature = "local")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "local", feature = "docker"))]
mod output;
#[cfg(any(feature = "docker", feature = "daytona"))]
mod saga;
#[cfg(any(feature = "docker", feature = "daytona"))]
mod shell;

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
mod local;
#[cfg(feature = "local")]
pub use local::LocalSandboxProvider;

#[cfg(feature = "docker")]
#[cfg_attr(docsrs, doc(cfg(feature = "docker")))]
mod docker;
#[cfg(feature = "docker")]
pub use docker::{DockerSandboxProvider, DockerSandboxProviderBuilder};

#[cfg(feature = "daytona")]
#[cfg_attr(docsrs, doc(cfg(feature = "daytona")))]
mod daytona;
#[cfg(feature = "daytona")]
pub use daytona::{DaytonaSandboxProvider, DaytonaSandboxProviderBuilder};
