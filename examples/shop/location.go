package shop

import "hash/fnv"

// cityCenters are the coordinates (lat, lon) of the demo's cities; a
// checkout is placed at its user's city, so that location rules (the
// geofence example plugin) have data to judge.
var cityCenters = map[string][2]float64{
	"Shanghai": {31.2304, 121.4737}, "Beijing": {39.9042, 116.4074}, "Shenzhen": {22.5431, 114.0579},
	"Guangzhou": {23.1291, 113.2644}, "Hangzhou": {30.2741, 120.1551}, "Chengdu": {30.5728, 104.0668},
	"Wuhan": {30.5928, 114.3055}, "Nanjing": {32.0603, 118.7969}, "Xi'an": {34.3416, 108.9398},
	"Chongqing": {29.5630, 106.5516},
}

// eiffelTower is where the travellers of the demo shop: 3% of checkouts,
// chosen by a hash of the user and the time, happen on a trip to Paris,
// near the Eiffel Tower (examples/plugins/rules.yaml's geofence).
var eiffelTower = [2]float64{48.8575, 2.2945}

// checkoutPlace is where user u checked out at t: a hash decides, without
// drawing from the generator's random numbers (so adding places changed
// no other event of the demo), between a trip to Paris and home, each
// with up to about a kilometre of spread.
func checkoutPlace(u *user, t int64) (lat, lon float64) {
	h := fnv.New64a()
	h.Write([]byte(u.id))
	var b [8]byte
	for i := range b {
		b[i] = byte(t >> (8 * i))
	}
	h.Write(b[:])
	x := h.Sum64()
	c, ok := cityCenters[u.city]
	if x%100 < 3 || !ok {
		c = eiffelTower
	}
	// Two more bytes of the hash spread the point over ±0.004°.
	dlat := (float64((x>>8)&0xff)/255 - 0.5) * 0.008
	dlon := (float64((x>>16)&0xff)/255 - 0.5) * 0.008
	return c[0] + dlat, c[1] + dlon
}

// withPlace adds a checkout's coordinates to its properties.
func withPlace(u *user, t int64, props map[string]any) map[string]any {
	props["lat"], props["lon"] = checkoutPlace(u, t)
	return props
}
