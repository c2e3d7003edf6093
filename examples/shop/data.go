package shop

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// weighted is a list of values with relative weights.
type weighted[T any] struct {
	vals []T
	cum  []float64
}

func newWeighted[T any](pairs ...any) weighted[T] {
	var w weighted[T]
	total := 0.0
	for i := 0; i < len(pairs); i += 2 {
		total += pairs[i+1].(float64)
		w.vals = append(w.vals, pairs[i].(T))
		w.cum = append(w.cum, total)
	}
	for i := range w.cum {
		w.cum[i] /= total
	}
	return w
}

func pick[T any](rng *rand.Rand, w weighted[T]) T {
	r := rng.Float64()
	for i, c := range w.cum {
		if r < c {
			return w.vals[i]
		}
	}
	return w.vals[len(w.vals)-1]
}

var (
	cities = newWeighted[string](
		"Shanghai", 18.0, "Beijing", 16.0, "Shenzhen", 12.0, "Guangzhou", 11.0,
		"Hangzhou", 9.0, "Chengdu", 9.0, "Wuhan", 7.0, "Nanjing", 6.0, "Xi'an", 6.0,
		"Chongqing", 6.0)
	genders  = newWeighted[string]("female", 49.0, "male", 47.0, "other", 4.0)
	plans    = newWeighted[string]("free", 70.0, "plus", 22.0, "premium", 8.0)
	channels = newWeighted[string](
		"organic", 30.0, "app_store", 20.0, "wechat", 18.0, "referral", 12.0,
		"search_ads", 12.0, "offline_event", 8.0)
	referrers = newWeighted[string](
		"direct", 30.0, "google", 12.0, "baidu", 14.0, "wechat", 16.0, "weibo", 6.0,
		"email", 7.0, "push", 8.0, "ads", 7.0)
	landing = newWeighted[string](
		"home", 55.0, "promo", 15.0, "category/electronics", 6.0, "category/apparel", 6.0,
		"category/beauty", 5.0, "account", 5.0, "cart", 8.0)
	pages = newWeighted[string](
		"home", 25.0, "category/electronics", 10.0, "category/apparel", 10.0,
		"category/shoes", 6.0, "category/beauty", 8.0, "category/home", 7.0,
		"category/grocery", 6.0, "promo", 10.0, "cart", 10.0, "account", 5.0, "help", 3.0)
	terms = newWeighted[string](
		"iphone 15", 6.0, "nike air max", 5.0, "adidas ultraboost", 3.0, "xiaomi 14", 4.0,
		"huawei mate", 4.0, "dyson hair dryer", 3.0, "lego", 3.0, "uniqlo t-shirt", 3.0,
		"running shoes", 5.0, "headphones", 5.0, "sunscreen", 4.0, "lipstick", 4.0,
		"rice cooker", 3.0, "coffee beans", 3.0, "yoga mat", 2.0, "air fryer", 3.0,
		"down jacket", 3.0, "phone case", 4.0, "protein powder", 2.0, "baby formula", 2.0,
		"samsung galaxy", 2.0, "switch games", 2.0, "mechanical keyboard", 2.0,
		// The Rust tokens example plugin looks for these words.
		"usb-c cable", 3.0, "phone charger", 3.0, "hdmi adapter", 1.0)
	payMethods = newWeighted[string](
		"alipay", 45.0, "wechat_pay", 38.0, "card", 12.0, "cash_on_delivery", 5.0)
	campaigns = newWeighted[string](
		"spring_sale", 25.0, "618_festival", 25.0, "livestream_beauty", 15.0,
		"offline_expo_shanghai", 10.0, "referral_bonus", 15.0, "new_member_week", 10.0)
)

type couponKind struct {
	campaign string
	value    float64
	days     int
}

var couponKinds = []couponKind{
	{"welcome10", 10, 14},
	{"spring_sale", 20, 7},
	{"618_festival", 50, 5},
	{"free_shipping", 8, 10},
	{"weekend_flash", 30, 3},
}

type product struct {
	sku      string
	category string
	price    float64
}

var categories = []struct {
	name     string
	lo, hi   float64
	products int
}{
	{"electronics", 199, 8999, 60},
	{"apparel", 39, 899, 80},
	{"shoes", 199, 1299, 40},
	{"beauty", 29, 599, 60},
	{"home", 49, 2999, 50},
	{"grocery", 5, 199, 60},
	{"toys", 29, 999, 30},
	{"sports", 49, 1999, 30},
}

// newCatalog makes a fixed product list with log-uniform prices per category.
func newCatalog(rng *rand.Rand) []product {
	var out []product
	for _, c := range categories {
		for i := range c.products {
			p := math.Exp(math.Log(c.lo) + rng.Float64()*(math.Log(c.hi)-math.Log(c.lo)))
			p = math.Floor(p) + 0.9
			if p > 100 {
				p = math.Floor(p/10)*10 + 9
			}
			out = append(out, product{
				sku:      fmt.Sprintf("SKU-%s-%03d", c.name[:3], i+1),
				category: c.name,
				price:    p,
			})
		}
	}
	return out
}
