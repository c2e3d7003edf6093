package bus

import (
	"context"
	"fmt"
	"strings"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/rules"
)

// RulesAdmin is what the rules admin endpoints (group api.AdminGroup) ask
// of segd: host implements it over RuleStore and the engine.
type RulesAdmin interface {
	ValidateRules(ctx context.Context, r api.RuleValidateRequest) (*api.RuleValidateReply, error)
	PutRule(ctx context.Context, r api.RulePutRequest) (*api.RulePutReply, error)
	GetRule(ctx context.Context, segment string) (*api.Rule, error)
	ListRules(ctx context.Context) (*api.RuleListReply, error)
	DeleteRule(ctx context.Context, r api.RuleRequest) (*api.RuleDeleteReply, error)
	RuleHistory(ctx context.Context, r api.RuleRequest) (*api.RuleHistoryReply, error)
}

// Limits of the rules admin requests.
const (
	// MaxRuleDefinitionBytes bounds a definition (rule.put, rule.validate).
	MaxRuleDefinitionBytes = 64 << 10
	// MaxRuleValidateFiles bounds the files of one rule.validate; their
	// total size is bounded by the server's max payload.
	MaxRuleValidateFiles = 256
	// MaxRuleAuthorBytes bounds the author recorded with a revision.
	MaxRuleAuthorBytes = 256
)

func ruleDefinition(def string) *api.ErrorDetail {
	if len(def) > MaxRuleDefinitionBytes {
		return badField("definition", fmt.Sprintf(`"definition" is %d bytes, over the limit of %d`, len(def), MaxRuleDefinitionBytes))
	}
	if strings.TrimSpace(def) == "" {
		return badField("definition", `"definition" is required: one segment as in a rules file, e.g. "id: buyers\ndid: {event: pay, last: 7d}"`)
	}
	return nil
}

// ruleSegment checks a segment id before it reaches the KV bucket, whose
// keys are NATS subject tokens: a long or odd one would be a protocol
// error on segd's own connection.
func ruleSegment(seg string) *api.ErrorDetail {
	if bad := requireSegment(seg); bad != nil {
		return bad
	}
	if !rules.ValidSegmentID(seg) {
		if len(seg) > 80 {
			seg = seg[:80] + "..."
		}
		return badField("segment", fmt.Sprintf(`"segment" %q is not a segment id: a letter, then up to 63 letters, digits, '_' or '-'`, seg))
	}
	return nil
}

func ruleAuthor(a string) *api.ErrorDetail {
	if len(a) > MaxRuleAuthorBytes {
		return badField("author", fmt.Sprintf(`"author" is %d bytes, over the limit of %d`, len(a), MaxRuleAuthorBytes))
	}
	return nil
}

// RuleEndpoints are the rules admin endpoints. Their work runs beside the
// queries' pool (Slow): a put waits for JetStream.
func RuleEndpoints(a RulesAdmin) []Endpoint {
	ep := func(name, subject, desc, req, reply string, parse func([]byte) (Work, *api.ErrorDetail)) Endpoint {
		return Endpoint{Name: name, Subject: subject, Slow: true, Description: desc, Request: req, Reply: reply, ParseContext: parse}
	}
	return []Endpoint{
		ep("rule_validate", api.SubjectRuleValidate,
			"Would these definitions compile beside the running ones? One segment (definition) or files; every problem with its file, line, column, segment and field.",
			`{"definition":"id: big_payers\ndid: {event: pay, aggregate: sum(amount), is: \">= 100\", last: 30d}\n"}`,
			`{"valid":true,"segments":["big_payers"]}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r api.RuleValidateRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if len(r.Files) > MaxRuleValidateFiles {
					return nil, badField("files", fmt.Sprintf(`"files" holds %d files, over the limit of %d`, len(r.Files), MaxRuleValidateFiles))
				}
				if len(r.Files) == 0 {
					if bad := ruleDefinition(r.Definition); bad != nil {
						return nil, bad
					}
				} else if r.Definition != "" {
					return nil, badField("definition", `send "definition" or "files", not both`)
				}
				return func(ctx context.Context) (any, error) { return a.ValidateRules(ctx, r) }, nil
			}),
		ep("rule_put", api.SubjectRulePut,
			"Create or replace one segment's definition; returns its new revision. It takes effect without a restart: rebuilt from the event log beside live ingest, then swapped in (a changed segment serves its previous revision meanwhile).",
			`{"definition":"id: big_payers\ndid: {event: pay, aggregate: sum(amount), is: \">= 100\", last: 30d}\n","expected_revision":0,"author":"ana"}`,
			`{"segment":"big_payers","revision":7,"state":"rebuilding"}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r api.RulePutRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if bad := ruleDefinition(r.Definition); bad != nil {
					return nil, bad
				}
				if bad := ruleAuthor(r.Author); bad != nil {
					return nil, bad
				}
				if r.Segment != "" {
					if bad := ruleSegment(r.Segment); bad != nil {
						return nil, bad
					}
				}
				return func(ctx context.Context) (any, error) { return a.PutRule(ctx, r) }, nil
			}),
		ep("rule_get", api.SubjectRuleGet,
			"A segment's definition, revision, author, time and state (the revision served while a newer one rebuilds).",
			`{"segment":"big_payers"}`,
			`{"segment":"big_payers","source":"api","definition":"id: big_payers\n...","revision":7,"author":"ana","time":"2026-12-07T10:00:00Z","state":"active","serving_revision":7}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r api.RuleRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if bad := ruleSegment(r.Segment); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.GetRule(ctx, r.Segment) }, nil
			}),
		ep("rule_list", api.SubjectRuleList,
			"Every segment definition, from the API and from rule files, with its revision and state.",
			`{}`, `{"rules":[{"segment":"big_payers","source":"api","revision":7,"author":"ana","time":"2026-12-07T10:00:00Z","state":"active","serving_revision":7}]}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r struct{}
				if bad := decodeRequest(data, &r, true); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.ListRules(ctx) }, nil
			}),
		ep("rule_delete", api.SubjectRuleDelete,
			"Delete a segment defined through the API (its history stays). Refused (409) while another segment reads it, naming those.",
			`{"segment":"big_payers","expected_revision":7}`, `{"segment":"big_payers","revision":8}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r api.RuleRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if bad := ruleSegment(r.Segment); bad != nil {
					return nil, bad
				}
				if bad := ruleAuthor(r.Author); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.DeleteRule(ctx, r) }, nil
			}),
		ep("rule_history", api.SubjectRuleHistory,
			fmt.Sprintf("A segment's revisions with their full texts, oldest first (the last %d are kept).", api.RuleHistoryDepth),
			`{"segment":"big_payers","limit":2}`,
			`{"segment":"big_payers","revisions":[{"revision":3,"definition":"id: big_payers\n...","author":"ana","time":"2026-12-06T09:00:00Z"},{"revision":7,"definition":"id: big_payers\n...","author":"ana","time":"2026-12-07T10:00:00Z"}]}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r api.RuleRequest
				if bad := decodeRequest(data, &r, false); bad != nil {
					return nil, bad
				}
				if bad := ruleSegment(r.Segment); bad != nil {
					return nil, bad
				}
				var bad *api.ErrorDetail
				if r.Limit, bad = requestLimit(r.Limit, api.RuleHistoryDepth, api.RuleHistoryDepth); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.RuleHistory(ctx, r) }, nil
			}),
	}
}
