//! Bundles: HEAD ^`base` from a repo's mirror, made once and stored in
//! the tiers under a name that says what it holds.

use super::answer::BundleAnswer;
use super::service::Snapshots;
use crate::repo::git::Git;
use crate::repo::names::bundle_object;
use crate::repo::plumbing::{head_of, SHORT_GIT_TIMEOUT};
use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::stats::bump;
use std::rc::Rc;

impl Snapshots {
    /// A bundle of HEAD ^`base` from `key`'s mirror, stored in the tiers.
    pub async fn bundle(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        base: &str,
    ) -> Result<BundleAnswer, RepoError> {
        let mirror = self.mirrors.repo(key, auth.clone(), Need::Fresh).await?;
        // Maybe newer than the mirror: fetch once before saying 404.
        let names = [format!("{base}^{{commit}}")];
        if self.mirrors.resolve_fetching(key, auth, &mirror, &names).await?.ids[0].is_none() {
            return Err(RepoError::UnknownCommit(base.to_owned()));
        }
        let head = head_of(&mirror).await?.ok_or_else(|| RepoError::NoCommits(key.canonical()))?;
        if head == base {
            return Ok(BundleAnswer::UpToDate);
        }
        let object = bundle_object(key, base, &head);
        if self.objects.open_object(&object).await.map_err(|e| RepoError::Io(e.to_string()))?.is_some() {
            return Ok(BundleAnswer::Stored(object));
        }
        // A fetch may move HEAD meanwhile: the bundle is named after the
        // head it really holds (list-heads), not the one read above.
        let tmp = self.shard.layout().tmp_path(self.shard.id).with_extension("bundle");
        let tmp_s = tmp.to_string_lossy().into_owned();
        let out = Git::new(["bundle", "create", "--quiet", &tmp_s, "HEAD", &format!("^{base}")])
            .dir(&mirror)
            .run(Vec::new(), SHORT_GIT_TIMEOUT * 10)
            .await?;
        if !out.ok() {
            let _ = std::fs::remove_file(&tmp);
            if out.stderr.contains("empty bundle") {
                // base is ahead of HEAD: the client has everything.
                return Ok(BundleAnswer::UpToDate);
            }
            return Err(RepoError::Git { what: "git bundle create".into(), stderr: out.stderr });
        }
        let heads = Git::new(["bundle", "list-heads", &tmp_s]).dir(&mirror).run(Vec::new(), SHORT_GIT_TIMEOUT).await?;
        let bundled = String::from_utf8_lossy(&heads.stdout).split_whitespace().next().unwrap_or("").to_owned();
        let object = bundle_object(key, base, if bundled.is_empty() { &head } else { &bundled });
        let stored = self.objects.put_file(&object, &tmp, true).await;
        let _ = std::fs::remove_file(&tmp);
        stored.map_err(|e| RepoError::Io(e.to_string()))?;
        bump(&self.shard.stats().bundle_builds, 1);
        Ok(BundleAnswer::Stored(object))
    }
}
