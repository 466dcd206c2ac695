//! Authentication: credentials from the options or auth files, bearer tokens
//! per repository and operation, cached for the connection.

use std::collections::HashMap;

use oci_client::RegistryOperation;
use oci_client::secrets::RegistryAuth;

use crate::reference::RegistryRef;

use super::*;

impl Registry {
    /// Authenticates for `r` up front (pull, and push if asked), so that
    /// concurrent transfers that follow share one token instead of racing
    /// to fetch their own.
    pub async fn prepare(&self, r: &RegistryRef, push: bool) -> Result<(), RegistryError> {
        self.authorize(r, false).await?;
        if push {
            self.authorize(r, true).await?;
        }
        Ok(())
    }

    /// Authenticates for `r` (once per repository and operation).
    pub(super) async fn authorize(
        &self,
        r: &RegistryRef,
        push: bool,
    ) -> Result<Option<String>, RegistryError> {
        if self.open {
            return Ok(None);
        }
        let key = (r.repository.clone(), push);
        if let Some(token) = self.lock_tokens().get(&key) {
            return Ok(token.clone());
        }
        let oci_ref = self.oci_ref(r, None);
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = self
            .retry("authentication", || async {
                self.oci()
                    .auth(&oci_ref, &self.auth, op)
                    .await
                    .map_err(|e| self.oci_error(r, "authentication", push, e))
            })
            .await?;
        self.lock_tokens().insert(key, token.clone());
        Ok(token)
    }

    /// Adds the bearer token from the auth dance, or else the basic
    /// credentials, to a request of our own.
    pub(super) fn with_auth(
        &self,
        req: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (token, &self.auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            _ => req,
        }
    }

    pub(super) fn lock_tokens(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, bool), Option<String>>> {
        // A poisoned map of tokens is still a map of tokens.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn unauthorized(
        &self,
        r: &RegistryRef,
        push: bool,
        challenge: bool,
    ) -> RegistryError {
        let detail = match (&self.creds_source, challenge) {
            (_, false) => " without saying how to authenticate (no WWW-Authenticate challenge); the registry is misconfigured or a proxy stripped the header".to_string(),
            (Some(src), true) => format!(
                ": the credentials from {src} were rejected; log in again with bpfman-image login {}",
                self.registry
            ),
            (None, true) => format!(
                ": no credentials for it were found; run bpfman-image login {} or pass --creds USER:PASSWORD",
                self.registry
            ),
        };
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: r.repository.clone(),
            operation: op_name(push),
            detail,
        }
    }
}
