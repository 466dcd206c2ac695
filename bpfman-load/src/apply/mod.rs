//! Declarative desired state: a host converges to what files declare.
//!
//! [`plan`] compares the declared deployments ([`file::Desired`]) with
//! what `apply` recorded before and what the kernel still has, and decides
//! per deployment: create, replace (a new image digest or file hash, or a
//! changed declaration), keep, or remove (no longer declared). [`apply`]
//! carries the plan out through the [`Host`] operations, one deployment at
//! a time: a failing one is reported and keeps its previous programs; the
//! others go on.
//!
//! Replacement is make-before-break: the new programs are loaded, each
//! takes its predecessor's place (the same dispatcher slot in one swap of
//! the hook, or an in-place update of an exclusive XDP or tcx link), and
//! only then do the old programs go. Only programs `apply` made (their
//! records name a deployment) are `apply`'s to replace or remove.

pub mod file;

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context as _, Result, anyhow, bail};
use bpfman_image::reference::ImageRef;
use bpfman_image::registry::TransportOptions;
use bpfman_image_spec::digest::Digest;
use serde::Serialize;

use crate::host::Host;
use crate::images::{self, ImageError, PullPolicy};
use crate::kernel::Kernel;
use crate::loader::LoadOptions;
use crate::state::{Deployed, ProgramRecord, Source};
use file::{DeploySource, Deployment, Desired, ProgramRef};

/// What happens to one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Create,
    Replace,
    Keep,
    Remove,
    /// It could not be resolved or applied; its previous programs (if
    /// any) keep running.
    Failed,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Replace => "replace",
            Self::Keep => "keep",
            Self::Remove => "remove",
            Self::Failed => "failed",
        })
    }
}

/// One line of a plan, or of what applying it did.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub deployment: String,
    pub change: Change,
    /// The declared source (for a removal, the recorded one).
    pub source: String,
    /// What the source resolves to: the image digest or the file's hash.
    pub desired: Option<Digest>,
    /// What the running programs came from.
    pub current: Option<Digest>,
    /// The deployment's program ids: after the change when applied, as
    /// found when planned.
    pub programs: Vec<u32>,
    /// Why this change (or what went wrong).
    pub reason: String,
}

/// A plan, or what applying one did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.change == Change::Failed)
    }

    /// Whether the host already is as declared (for `status`).
    pub fn converged(&self) -> bool {
        self.steps.iter().all(|s| s.change == Change::Keep)
    }
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Plan only: resolve and compare, change nothing (neither kernel nor
    /// cache).
    pub dry_run: bool,
    /// Offline: resolve tags from the cache only, never from a registry
    /// (`status`).
    pub offline: bool,
    /// Re-resolve tags at the registry (`--watch`): a deployment whose
    /// reference has no digest is pulled with `always` unless it says
    /// `never`.
    pub follow_tags: bool,
    pub transport: TransportOptions,
}

/// A deployment's source, resolved: its digest, and for an image applied
/// for real, the admitted image.
struct Resolved {
    /// `None` in a plan for an image not yet pulled.
    digest: Option<Digest>,
    admitted: Option<(images::Admitted, crate::loadable::Loadable)>,
    note: Option<String>,
}

/// Plans (with `dry_run`) or applies `desired` on `host`. `stop` is asked
/// between deployments; when it says so, the rest is left for next time.
pub fn apply<K: Kernel + Clone>(
    host: &Host<K>,
    desired: &Desired,
    opts: &ApplyOptions,
    stop: &dyn Fn() -> bool,
) -> Result<Report> {
    let mut current: BTreeMap<String, Vec<ProgramRecord>> = BTreeMap::new();
    for r in host.programs()? {
        if let Some(d) = &r.deployment {
            current.entry(d.name.clone()).or_default().push(r);
        }
    }
    let mut run = Run {
        host,
        opts,
        applied: BTreeMap::new(),
        fingerprints: BTreeMap::new(),
    };
    let mut steps = Vec::new();
    for d in &desired.deployments {
        if stop() {
            break;
        }
        let old = current.remove(&d.name).unwrap_or_default();
        steps.push(run.deployment(d, old));
    }
    for (name, old) in current {
        if stop() {
            break;
        }
        steps.push(run.remove(&name, &old));
    }
    Ok(Report {
        dry_run: opts.dry_run,
        steps,
    })
}

struct Run<'a, K: Kernel + Clone> {
    host: &'a Host<K>,
    opts: &'a ApplyOptions,
    /// The programs each deployment has after its step (for references).
    applied: BTreeMap<String, Vec<ProgramRecord>>,
    fingerprints: BTreeMap<String, String>,
}

fn source_digest(r: &ProgramRecord) -> Digest {
    match &r.source {
        Source::Image { image, .. } => image.clone(),
        Source::File { sha256, .. } => sha256.clone(),
    }
}

fn source_text(r: &ProgramRecord) -> String {
    match &r.source {
        Source::Image { reference, .. } => reference.clone(),
        Source::File { path, .. } => format!("file {}", path.display()),
    }
}

fn ids(records: &[ProgramRecord]) -> Vec<u32> {
    records.iter().map(|r| r.id).collect()
}

impl<K: Kernel + Clone> Run<'_, K> {
    fn deployment(&mut self, d: &Deployment, old: Vec<ProgramRecord>) -> Step {
        let mut step = Step {
            deployment: d.name.clone(),
            change: Change::Failed,
            source: d.source.to_string(),
            desired: None,
            current: old.first().map(source_digest),
            programs: ids(&old),
            reason: String::new(),
        };
        // A deployment that fails keeps what it had, for those after it.
        self.applied.insert(d.name.clone(), old.clone());
        let resolved = match self.resolve(d) {
            Ok(r) => r,
            Err(e) => {
                step.reason = format!("{e:#}");
                return step;
            }
        };
        step.desired = resolved.digest.clone();
        let Some(digest) = &resolved.digest else {
            // Only a plan gets here: the image is pulled when applied.
            step.change = if old.is_empty() {
                Change::Create
            } else {
                Change::Replace
            };
            step.reason = format!(
                "{} is not cached; its digest is known once it is pulled",
                d.source
            );
            return step;
        };
        let fingerprint = match self.fingerprint(d, digest) {
            Ok(f) => f,
            Err(e) => {
                step.reason = format!("{e:#}");
                return step;
            }
        };
        self.fingerprints
            .insert(d.name.clone(), fingerprint.clone());
        let (change, why) = decide(d, &old, &fingerprint, digest);
        step.change = change;
        step.reason = match &resolved.note {
            Some(n) => format!("{why}; {n}"),
            None => why,
        };
        if self.opts.dry_run || change == Change::Keep {
            return step;
        }
        let mark = Deployed {
            name: d.name.clone(),
            fingerprint,
        };
        match self.make(d, &old, resolved, mark) {
            Ok(made) => {
                step.programs = ids(&made);
                self.applied.insert(d.name.clone(), made);
            }
            Err(e) => {
                step.change = Change::Failed;
                step.reason = format!("{e:#}");
                if !old.is_empty() {
                    step.reason.push_str("; its previous programs keep running");
                }
            }
        }
        step
    }

    /// The digest a deployment's source resolves to; for an image applied
    /// for real, pulled (per its pull policy) and admitted by the policy.
    fn resolve(&self, d: &Deployment) -> Result<Resolved> {
        let image = match &d.source {
            DeploySource::File(path) => {
                let bytes = bpfman_trust::file::read_regular(
                    path,
                    bpfman_image_spec::layer::MAX_OBJECT_SIZE,
                    bpfman_trust::file::Links::Follow,
                )
                .with_context(|| format!("cannot read '{}'", path.display()))?;
                return Ok(Resolved {
                    digest: Some(Digest::of(&bytes)),
                    admitted: None,
                    note: None,
                });
            }
            DeploySource::Image(r) => r,
        };
        let policy = self.pull_policy(d, image);
        if self.opts.dry_run {
            return self.resolve_without_pulling(image, policy);
        }
        match self.host.admit(image, policy, &self.opts.transport) {
            Ok((admitted, loadable)) => Ok(Resolved {
                digest: Some(admitted.record.digest.clone()),
                admitted: Some((admitted, loadable)),
                note: None,
            }),
            // The registry is unreachable (or the pull failed): a cached
            // image, verified again, keeps the host running. A refusal by
            // the policy is final.
            Err(e) if policy == PullPolicy::Always && !refused(&e) => {
                let (admitted, loadable) = self
                    .host
                    .verify(image)
                    .map_err(|_| e.context("and it is not in the cache"))?;
                Ok(Resolved {
                    digest: Some(admitted.record.digest.clone()),
                    admitted: Some((admitted, loadable)),
                    note: Some("the registry could not be reached; used the cached image".into()),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn pull_policy(&self, d: &Deployment, image: &ImageRef) -> PullPolicy {
        let pinned = match image {
            ImageRef::Registry(r) => r.digest.is_some(),
            ImageRef::Layout(_) => false,
        };
        match d.pull_policy {
            // A digest never moves: once cached, it needs no registry.
            PullPolicy::Always if pinned => PullPolicy::IfNotPresent,
            PullPolicy::IfNotPresent if self.opts.follow_tags && !pinned => PullPolicy::Always,
            p => p,
        }
    }

    /// The digest without touching the cache: the reference's own, the
    /// cache's, or (pull policy `always`, not offline) the registry's.
    fn resolve_without_pulling(&self, image: &ImageRef, policy: PullPolicy) -> Result<Resolved> {
        if let ImageRef::Registry(r) = image
            && let Some(d) = &r.digest
        {
            return Ok(Resolved {
                digest: Some(d.clone()),
                admitted: None,
                note: None,
            });
        }
        if policy == PullPolicy::Always && !self.opts.offline {
            let top = bpfman_image::runtime()?.block_on(async {
                let store =
                    bpfman_image::store::ImageStore::open_to_read(image, &self.opts.transport)
                        .await?;
                store.resolve_as(image).await
            });
            match top {
                Ok(r) => {
                    return Ok(Resolved {
                        digest: Some(r.top.digest),
                        admitted: None,
                        note: None,
                    });
                }
                Err(e) => tracing::warn!("cannot resolve {image}: {e}; planning with the cache"),
            }
        }
        let key = images::cache_key(image);
        let cached = self.host.cache().lookup(&key)?;
        if cached.is_none() && policy == PullPolicy::Never {
            bail!("{key} is not in the cache and its pull policy is never");
        }
        Ok(Resolved {
            digest: cached.map(|r| r.digest),
            admitted: None,
            note: None,
        })
    }

    /// The deployment as declared, what it resolved to, and the
    /// fingerprints of the deployments whose maps it shares.
    fn fingerprint(&self, d: &Deployment, digest: &Digest) -> Result<String> {
        let share = match &d.share_maps_with {
            Some(n) => Some(self.fingerprints.get(n).ok_or_else(|| {
                anyhow!("it shares maps with '{n}', which could not be resolved")
            })?),
            None => None,
        };
        let basis = serde_json::json!({
            "declared": d.declared(),
            "digest": digest.to_string(),
            "shares": share,
        });
        Ok(Digest::of(basis.to_string().as_bytes()).to_string())
    }

    /// Loads and attaches a deployment's programs; with `old`, each new
    /// attachment takes its predecessor's place and then `old` goes.
    fn make(
        &self,
        d: &Deployment,
        old: &[ProgramRecord],
        resolved: Resolved,
        mark: Deployed,
    ) -> Result<Vec<ProgramRecord>> {
        let host = self.host;
        let share_maps_with = match &d.share_maps_with {
            Some(n) => Some(
                self.applied
                    .get(n)
                    .and_then(|r| r.first())
                    .map(|r| r.id)
                    .ok_or_else(|| anyhow!("'{n}', whose maps it shares, has no programs"))?,
            ),
            None => None,
        };
        let load = LoadOptions {
            programs: d.programs.clone(),
            globals: d.globals.clone(),
            share_maps_with,
            deployment: Some(mark),
        };
        let made = match (&d.source, &resolved.admitted) {
            (DeploySource::Image(r), Some((admitted, loadable))) => {
                host.load_admitted(r, admitted, loadable, &load)?
            }
            (DeploySource::File(p), _) => host.load_file(p, &load)?,
            (DeploySource::Image(r), None) => bail!("{r} was not admitted"),
        };
        let mut moved: Vec<(u32, u32, crate::attach::AttachRequest)> = Vec::new();
        let attached = self.attach_all(d, old, &made, &mut moved);
        if let Err(e) = attached {
            // Give every place taken over back, then drop what was made.
            let loader = host.loader()?;
            for (from, to, req) in moved.iter().rev() {
                if let Err(back) = loader.take_over(*to, *from, req, |r| host.program_object(r)) {
                    tracing::warn!("cannot give program {from} its place back: {back:#}");
                }
            }
            for r in &made {
                if let Err(u) = host.unload(r.id) {
                    tracing::warn!("cannot unload program {} after a failed apply: {u:#}", r.id);
                }
            }
            return Err(e);
        }
        for r in old {
            host.unload(r.id).with_context(|| {
                format!("replaced, but cannot unload the previous program {}", r.id)
            })?;
        }
        let mut now: Vec<ProgramRecord> = Vec::new();
        for r in &made {
            now.push(host.program(r.id)?);
        }
        Ok(now)
    }

    fn attach_all(
        &self,
        d: &Deployment,
        old: &[ProgramRecord],
        made: &[ProgramRecord],
        moved: &mut Vec<(u32, u32, crate::attach::AttachRequest)>,
    ) -> Result<()> {
        let host = self.host;
        for spec in &d.attach {
            let program =
                pick(made, spec.program.as_deref(), &d.name).with_context(|| spec.at.clone())?;
            let request = spec.request(|r| self.program_of(r))?;
            let predecessor = old.iter().find(|o| o.name == program.name);
            if let Some(p) = predecessor {
                let took = host
                    .loader()?
                    .take_over(p.id, program.id, &request, |r| host.program_object(r))
                    .with_context(|| {
                        format!("{}: cannot take over program {}'s place", spec.at, p.id)
                    })?;
                if took.is_some() {
                    moved.push((p.id, program.id, request));
                    continue;
                }
            }
            host.attach(program.id, &request)
                .with_context(|| spec.at.clone())?;
        }
        Ok(())
    }

    /// The id of another deployment's program (tcx before/after).
    fn program_of(&self, r: &ProgramRef) -> Result<u32> {
        let records = self
            .applied
            .get(&r.deployment)
            .ok_or_else(|| anyhow!("deployment '{}' has no programs", r.deployment))?;
        Ok(pick(records, r.program.as_deref(), &r.deployment)?.id)
    }

    fn remove(&self, name: &str, old: &[ProgramRecord]) -> Step {
        let mut step = Step {
            deployment: name.to_string(),
            change: Change::Remove,
            source: old.first().map(source_text).unwrap_or_default(),
            desired: None,
            current: old.first().map(source_digest),
            programs: ids(old),
            reason: "no longer declared".into(),
        };
        if self.opts.dry_run {
            return step;
        }
        for r in old {
            if let Err(e) = self.host.unload(r.id) {
                step.change = Change::Failed;
                step.reason = format!("cannot unload program {}: {e:#}", r.id);
                return step;
            }
        }
        step.programs.clear();
        step
    }
}

/// Whether an error is the trust policy's refusal (final, unlike a
/// registry that cannot be reached).
fn refused(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<ImageError>(), Some(ImageError::Refused(_))))
}

/// The program named `name` among `records`, or the only one.
fn pick<'r>(
    records: &'r [ProgramRecord],
    name: Option<&str>,
    deployment: &str,
) -> Result<&'r ProgramRecord> {
    match name {
        Some(n) => records.iter().find(|r| r.name == n).ok_or_else(|| {
            let have: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
            anyhow!(
                "deployment '{deployment}' has no program '{n}' (it has {})",
                have.join(", ")
            )
        }),
        None if records.len() == 1 => Ok(&records[0]),
        None => {
            let have: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
            bail!(
                "deployment '{deployment}' has several programs ({}); say which with 'program'",
                have.join(", ")
            )
        }
    }
}

/// Create, keep or replace, and why.
fn decide(
    d: &Deployment,
    old: &[ProgramRecord],
    fingerprint: &str,
    digest: &Digest,
) -> (Change, String) {
    if old.is_empty() {
        return (Change::Create, "not running".into());
    }
    if old.iter().any(|r| {
        r.deployment
            .as_ref()
            .is_none_or(|m| m.fingerprint != fingerprint)
    }) {
        let why = if old.iter().any(|r| source_digest(r) != *digest) {
            format!("{} resolves to a new digest", d.source)
        } else {
            "its declaration changed".into()
        };
        return (Change::Replace, why);
    }
    let links: usize = old.iter().map(|r| r.links.len()).sum();
    if links < d.attach.len() {
        return (
            Change::Replace,
            format!(
                "{} of its {} attachments are gone",
                d.attach.len() - links,
                d.attach.len()
            ),
        );
    }
    if !d.programs.is_empty() && old.len() != d.programs.len() {
        return (Change::Replace, "some of its programs are gone".into());
    }
    (Change::Keep, "as declared".into())
}

#[cfg(test)]
mod tests;
