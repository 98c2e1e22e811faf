//! Layers: one stage of policy with inbound and outbound rules, a default
//! for each direction, and its own flow table (LFT) for stateful actions.

use crate::action::{ActionDesc, ActionId};
use crate::flow::{Direction, FlowHashBuilder, FlowKey};
use crate::rule::{RuleId, RuleTable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// What a layer does with a packet no rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Allow,
    Deny,
}

#[derive(Clone, Debug)]
pub struct LayerConfig {
    pub name: String,
    pub default_in: DefaultAction,
    pub default_out: DefaultAction,
}

impl LayerConfig {
    pub fn new(name: &str, default_in: DefaultAction, default_out: DefaultAction) -> Self {
        LayerConfig {
            name: name.to_string(),
            default_in,
            default_out,
        }
    }
}

/// State a stateful action left for a flow in this layer.
#[derive(Clone, Debug)]
pub(crate) enum LftState {
    Allow,
    Desc(Arc<dyn ActionDesc>),
}

#[derive(Clone, Debug)]
pub(crate) struct LftEntry {
    pub flow: u32,
    pub flow_gen: u32,
    pub state: LftState,
    /// Port epoch when the entry was made.
    pub epoch: u64,
    /// The action that made it, to recognise it after a rule change.
    pub action_id: ActionId,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LayerDirStats {
    /// Packets that reached this layer on the slow path.
    pub packets: u64,
    /// Of those, how many found state in the layer's flow table.
    pub lft_hits: u64,
    /// How many no rule matched.
    pub default_hits: u64,
    /// How many this layer dropped.
    pub dropped: u64,
    /// Of those, how many a deny rule dropped (`denied`) and how many its
    /// default did (`default_denied`): which layer a port's `denied` and
    /// `default_denied` drops come from.
    pub denied: u64,
    pub default_denied: u64,
    /// How many this layer answered with a hairpin.
    pub hairpins: u64,
}

impl LayerDirStats {
    /// Every counter by its (serialized) name: what metrics and the CLI
    /// export. Destructured whole, so a counter added or renamed here
    /// fails the build until it is listed.
    pub fn counters(&self) -> [(&'static str, u64); 7] {
        let LayerDirStats {
            packets,
            lft_hits,
            default_hits,
            dropped,
            denied,
            default_denied,
            hairpins,
        } = *self;
        [
            ("packets", packets),
            ("lft_hits", lft_hits),
            ("default_hits", default_hits),
            ("dropped", dropped),
            ("denied", denied),
            ("default_denied", default_denied),
            ("hairpins", hairpins),
        ]
    }
}

pub struct Layer {
    pub(crate) name: String,
    pub(crate) rules: [RuleTable; 2],
    pub(crate) default: [DefaultAction; 2],
    pub(crate) lft: [HashMap<FlowKey, LftEntry, FlowHashBuilder>; 2],
    /// Whether any flow record ever held this layer's `StatefulAllow`
    /// state (folded there instead of in `lft`): if not, the walk skips
    /// looking for it.
    pub(crate) folds: bool,
    /// Whether any flow record ever held this layer's stateful action's
    /// state (a NAT translation, `FlowRec::held`).
    pub(crate) holds: bool,
    /// Port epoch of the last rule change in this layer.
    pub(crate) changed: u64,
    pub(crate) next_rule: u64,
    pub(crate) stats: [LayerDirStats; 2],
}

impl Layer {
    pub(crate) fn new(cfg: LayerConfig, hasher: FlowHashBuilder) -> Layer {
        let mut default = [DefaultAction::Allow; 2];
        default[Direction::In.index()] = cfg.default_in;
        default[Direction::Out.index()] = cfg.default_out;
        Layer {
            name: cfg.name,
            rules: [RuleTable::default(), RuleTable::default()],
            default,
            lft: [HashMap::with_hasher(hasher), HashMap::with_hasher(hasher)],
            folds: false,
            holds: false,
            changed: 0,
            next_rule: 1,
            stats: [LayerDirStats::default(); 2],
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn alloc_rule_id(&mut self) -> RuleId {
        let id = RuleId(self.next_rule);
        self.next_rule += 1;
        id
    }

    pub fn rule_count(&self, dir: Direction) -> usize {
        self.rules[dir.index()].len()
    }

    pub fn stats(&self, dir: Direction) -> LayerDirStats {
        self.stats[dir.index()]
    }
}
