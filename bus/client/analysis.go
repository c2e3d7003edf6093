package client

import (
	"context"

	"github.com/segd/segd/bus/api"
)

// AnalyzeEvents returns daily event series per segment, beside all users
// (api.AllUsers).
func (c *Client) AnalyzeEvents(ctx context.Context, req api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	var r api.AnalysisEventsReply
	if err := c.call(ctx, api.SubjectAnalysisEvents, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AnalyzeFunnel returns the users reaching each funnel step per segment.
func (c *Client) AnalyzeFunnel(ctx context.Context, req api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	var r api.AnalysisFunnelReply
	if err := c.call(ctx, api.SubjectAnalysisFunnel, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AnalyzeRetention returns the retention cohorts per segment.
func (c *Client) AnalyzeRetention(ctx context.Context, req api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	var r api.AnalysisRetentionReply
	if err := c.call(ctx, api.SubjectAnalysisRetention, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AnalyzeTrend returns segment sizes per day.
func (c *Client) AnalyzeTrend(ctx context.Context, req api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	var r api.AnalysisTrendReply
	if err := c.call(ctx, api.SubjectAnalysisTrend, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
