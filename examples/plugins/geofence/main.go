// Command geofence is a segd plugin: it matches events (or profiles) whose
// latitude/longitude lies inside any of the polygons given in the rule's
// params. Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o geofence.wasm .
//
// Params:
//
//	{"lat": "lat", "lon": "lon",            // property names (defaults shown)
//	 "polygons": [[[48.85, 2.29], [48.86, 2.35], [48.84, 2.36]], ...]}
//
// A point matches if it is inside at least one polygon (even-odd rule).
package main

import (
	"fmt"

	"github.com/segd/segd/sdk"
)

type polygon struct {
	lat, lon                       []float64
	minLat, maxLat, minLon, maxLon float64
}

var (
	// latKey and lonKey are resolved once per batch (sdk.Prop), so reading
	// them per event is an index, not a name lookup.
	latKey, lonKey sdk.Key
	polys          []polygon
)

func init() {
	sdk.OnInit(setup)
	sdk.SendOnlyKeys() // the host sends only the properties named in the params
	sdk.HandleEvents(func(e sdk.Event) bool {
		lat, ok1 := e.NumOfOK(latKey)
		lon, ok2 := e.NumOfOK(lonKey)
		return ok1 && ok2 && inside(lat, lon)
	})
	sdk.HandleProfiles(func(p sdk.Profile) bool {
		lat, ok1 := p.NumOfOK(latKey)
		lon, ok2 := p.NumOfOK(lonKey)
		return ok1 && ok2 && inside(lat, lon)
	})
}

func setup() error {
	var p struct {
		Lat      string         `json:"lat"`
		Lon      string         `json:"lon"`
		Polygons [][][2]float64 `json:"polygons"`
	}
	if err := sdk.Params(&p); err != nil {
		return err
	}
	latName, lonName := "lat", "lon"
	if p.Lat != "" {
		latName = p.Lat
	}
	if p.Lon != "" {
		lonName = p.Lon
	}
	latKey, lonKey = sdk.Prop(latName), sdk.Prop(lonName)
	if len(p.Polygons) == 0 {
		return fmt.Errorf("params: polygons: need at least one polygon")
	}
	for i, pts := range p.Polygons {
		if len(pts) < 3 {
			return fmt.Errorf("params: polygons[%d]: has %d points, need at least 3", i, len(pts))
		}
		pg := polygon{minLat: pts[0][0], maxLat: pts[0][0], minLon: pts[0][1], maxLon: pts[0][1]}
		for _, pt := range pts {
			pg.lat = append(pg.lat, pt[0])
			pg.lon = append(pg.lon, pt[1])
			pg.minLat, pg.maxLat = min(pg.minLat, pt[0]), max(pg.maxLat, pt[0])
			pg.minLon, pg.maxLon = min(pg.minLon, pt[1]), max(pg.maxLon, pt[1])
		}
		polys = append(polys, pg)
	}
	sdk.Logf("geofence: %d polygons on %s/%s", len(polys), latName, lonName)
	return nil
}

func inside(lat, lon float64) bool {
	for i := range polys {
		pg := &polys[i]
		if lat < pg.minLat || lat > pg.maxLat || lon < pg.minLon || lon > pg.maxLon {
			continue
		}
		in := false
		n := len(pg.lat)
		for a, b := 0, n-1; a < n; b, a = a, a+1 {
			if (pg.lat[a] > lat) != (pg.lat[b] > lat) &&
				lon < (pg.lon[b]-pg.lon[a])*(lat-pg.lat[a])/(pg.lat[b]-pg.lat[a])+pg.lon[a] {
				in = !in
			}
		}
		if in {
			return true
		}
	}
	return false
}

func main() {}
