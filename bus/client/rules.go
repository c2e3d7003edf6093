package client

import (
	"context"

	"github.com/segd/segd/bus/api"
)

// IsConflict reports a 409: an expected revision another editor moved on
// from, or a delete refused while other segments read the segment.
func IsConflict(err error) bool { return hasCode(err, api.CodeConflict) }

// ValidateRules asks whether definitions compile beside the running ones.
func (c *Client) ValidateRules(ctx context.Context, r api.RuleValidateRequest) (*api.RuleValidateReply, error) {
	var out api.RuleValidateReply
	return &out, c.call(ctx, api.SubjectRuleValidate, r, &out)
}

// PutRule creates or replaces a segment's definition.
func (c *Client) PutRule(ctx context.Context, r api.RulePutRequest) (*api.RulePutReply, error) {
	var out api.RulePutReply
	return &out, c.call(ctx, api.SubjectRulePut, r, &out)
}

// GetRule returns a segment's definition and state.
func (c *Client) GetRule(ctx context.Context, segment string) (*api.Rule, error) {
	var out api.Rule
	return &out, c.call(ctx, api.SubjectRuleGet, api.RuleRequest{Segment: segment}, &out)
}

// ListRules lists every definition.
func (c *Client) ListRules(ctx context.Context) ([]api.Rule, error) {
	var out api.RuleListReply
	return out.Rules, c.call(ctx, api.SubjectRuleList, struct{}{}, &out)
}

// DeleteRule deletes a segment defined through the API.
func (c *Client) DeleteRule(ctx context.Context, r api.RuleRequest) (*api.RuleDeleteReply, error) {
	var out api.RuleDeleteReply
	return &out, c.call(ctx, api.SubjectRuleDelete, r, &out)
}

// RuleHistory lists a segment's revisions, oldest first.
func (c *Client) RuleHistory(ctx context.Context, segment string, limit int) (*api.RuleHistoryReply, error) {
	var out api.RuleHistoryReply
	return &out, c.call(ctx, api.SubjectRuleHistory, api.RuleRequest{Segment: segment, Limit: limit}, &out)
}
